#!/usr/bin/env node
/**
 * Bundles the command (issue 9): `node scripts/bundle-cli.mjs [OUTDIR]`, by default dist/cli,
 * beside tsc's dist/ (the library and its declarations; tsc leaves src/cli out). OUTDIR gets
 * sparsify.cjs, the "bin" that sizes libuv's pool and imports ./main.js, and main.js.
 *
 * A copy run from tsc's output read ~400 module files at start-up; this writes dist/cli/main.js
 * as an ES module bundle of src/cli/main.ts and the npm packages it uses, split at the dynamic
 * imports (run-command, inspect, batch, argon2's caller), so `--version` and `--help` still read
 * none of the disk-work code. Kept outside: packages with native addons (koffi, argon2, zstd-napi),
 * loaded by require at run time, and sparsify's own addon (build/Release/sparsify_deflate.node,
 * built by npm install), which compress-zlib.js loads two folders up from itself: from dist/cli/
 * as from src/qcow2/ and dist/qcow2/. The compress worker is its own entry, compress-worker.js: the
 * pool starts it by `new URL('./compress-worker.js', import.meta.url)`, so every output file stays
 * flat in OUTDIR, beside whichever chunk holds the pool. Source maps point stack traces at src/
 * (with `node --enable-source-maps`).
 */
import { build } from 'esbuild';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(import.meta.url), '..', '..');
/** Packages that load a native addon (.node file) by path: bundling them would break that. */
const NATIVE = ['koffi', 'argon2', 'zstd-napi'];

/** Bundles the CLI into `outdir`; returns esbuild's metafile. */
export async function bundleCli(outdir = resolve(REPO, 'dist', 'cli')) {
  await build({
    absWorkingDir: REPO,
    entryPoints: ['src/cli/sparsify.cts'],
    outfile: resolve(outdir, 'sparsify.cjs'),
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    sourcesContent: false,
    logLevel: 'warning',
  });
  const result = await build({
    absWorkingDir: REPO,
    entryPoints: { main: 'src/cli/main.ts', 'compress-worker': 'src/qcow2/compress-worker.js' },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    chunkNames: 'chunk-[hash]',
    external: NATIVE,
    sourcemap: true,
    sourcesContent: false,
    metafile: true,
    logLevel: 'warning',
    // CommonJS packages in the bundle (xml2js, tmp) require Node's built-ins: give them a require.
    banner: { js: "import { createRequire as __sparsifyCreateRequire } from 'node:module'; const require = __sparsifyCreateRequire(import.meta.url);" },
  });
  return result.metafile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundleCli(process.argv[2] ? resolve(process.argv[2]) : undefined);
