#!/usr/bin/env node
/**
 * The command's entry point (package.json "bin"): sizes libuv's thread pool, then runs main.js.
 *
 * The copier's file reads and large writes run on that pool, 4 threads by default, shared by
 * reads and writes: with 8 chunks in flight, reads waited behind writes that waited for the disk.
 * 16 threads cover every request the copier keeps in flight. Measured on the bench's mostly
 * image (qcow2 input, 4.5 GiB, --no-zero), alternating, load 15-20: wall median 18.9 -> 14.9 s to
 * raw, 17.7/22.2 -> 14.0/18.4 s to qcow2. The pool is sized when first used, and an ES module
 * entry is itself read through it, hence this CommonJS file; a size the user set is kept.
 */
process.env['UV_THREADPOOL_SIZE'] ??= '16';
// main.js is a bundle (scripts/bundle-cli.mjs): with -v, whose traces are printed, they name
// src/ files through its source maps; otherwise reading the maps would only slow start-up.
if (process.argv.includes('-v') || process.argv.includes('--verbose')) process.setSourceMapsEnabled(true);
void import('./main.js');
