/** An image file opened for the verifier: served by qemu-storage-daemon in its format, read over NBD. */
import type { RunContext } from '../context.js';
import { openNbdClient, type NbdClient } from '../nbd/client.js';
import { serveImage } from '../qemu/storage-daemon.js';
import { AsyncStack } from '../util/async-stack.js';

/** A served image and its NBD client; disposing closes both. */
export interface OpenedImage extends AsyncDisposable {
  readonly device: NbdClient;
}

/** What to open. */
export interface OpenImageSpec {
  readonly file: string;
  readonly format: string;
  /** Directory for the daemon's socket and pid file. */
  readonly dir: string;
  /** Read-only (qemu's shared lock) unless set; only the test hook writes. */
  readonly writable?: boolean;
}

/** Serves `spec.file` and connects to it; the caller disposes (`await using`). */
export async function openImage(ctx: RunContext, spec: OpenImageSpec): Promise<OpenedImage> {
  const stack = new AsyncStack((err) => ctx.log.debug(`closing ${spec.file}: ${String(err)}`));
  try {
    const served = stack.use(
      await serveImage(ctx, { file: spec.file, format: spec.format, readOnly: !spec.writable, discard: false, fuse: false, dir: spec.dir }),
    );
    const device = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal }));
    const owned = stack.move();
    return { device, [Symbol.asyncDispose]: () => owned[Symbol.asyncDispose]() };
  } catch (err) {
    await stack[Symbol.asyncDispose]();
    throw err;
  }
}
