/** The error of one NBD request the server refused (or that the client refused to send). */
import { type ErrorCode, SparsifyError } from '../errors.js';
import { NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_ESHUTDOWN, commandName, errnoName } from './protocol.js';

/** What a request was, for the message. */
export interface RequestFacts {
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** A request the server answered with an error; only that request fails, the connection lives on. */
export class NbdRequestError extends SparsifyError {
  readonly command: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** The NBD error value (proto.md §Error values), e.g. 28 for ENOSPC. */
  readonly errno: number;
  readonly errnoName: string;
  /** The server's own words, when it sent any. */
  readonly serverMessage: string;

  constructor(req: RequestFacts, errno: number, serverMessage = '', errorOffsetBytes?: number) {
    const command = commandName(req.type);
    const at = errorOffsetBytes === undefined ? '' : ` (at offset ${errorOffsetBytes})`;
    const said = serverMessage ? `: ${serverMessage}` : '';
    super(
      codeOf(errno),
      `NBD ${command} at offset ${req.offsetBytes} (${req.lengthBytes} bytes) failed: ${errnoName(errno)}${at}${said}`,
      { hint: hintOf(errno) },
    );
    this.name = 'NbdRequestError';
    this.command = command;
    this.offsetBytes = req.offsetBytes;
    this.lengthBytes = req.lengthBytes;
    this.errno = errno;
    this.errnoName = errnoName(errno);
    this.serverMessage = serverMessage;
  }
}

/** ENOSPC is the user's to fix; EPERM and ENOTSUP mean the export cannot do it; the rest is the server failing. */
function codeOf(errno: number): ErrorCode {
  if (errno === NBD_ENOSPC) return 'NO_SPACE';
  if (errno === NBD_EPERM || errno === NBD_ENOTSUP) return 'UNSUPPORTED';
  return 'TOOL_FAILED';
}

function hintOf(errno: number): string | undefined {
  if (errno === NBD_ENOSPC) return 'free space on the filesystem that holds the image or --tmp';
  if (errno === NBD_EPERM) return 'the export is read-only or the server forbids this operation';
  if (errno === NBD_ESHUTDOWN) return 'the NBD server is shutting down';
  return undefined;
}
