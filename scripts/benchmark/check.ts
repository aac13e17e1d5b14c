/** Judges one output before its times count: a bench must not time a wrong result. */
import { execFile } from 'node:child_process';
import { verifyImage } from '../../test/helpers/verify.js';
import type { CheckKind } from './peers.js';

export interface CheckResult {
  readonly kind: CheckKind;
  readonly ok: boolean;
  /** The first problem, or how it was checked. */
  readonly detail: string;
}

export interface CheckTarget {
  readonly output: string;
  readonly outputFormat: 'raw' | 'qcow2';
  readonly input: string;
  readonly inputFormat: 'raw' | 'qcow2';
  readonly floorInput: string;
  /** make-image's manifest of the input. */
  readonly manifest: string;
}

function qemuImgCompare(a: string, aFormat: string, b: string, bFormat: string): Promise<{ code: number; text: string }> {
  return new Promise((resolve) => {
    execFile('qemu-img', ['compare', '-f', aFormat, '-F', bFormat, a, b], (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, text: `${stdout}${stderr}`.trim().split('\n').pop() ?? '' });
    });
  });
}

/** The check under way: an interrupt waits for it, so that the verifier unmounts what it mounted. */
let inFlight: Promise<CheckResult> | undefined;

/** Resolves once no check is running. */
export async function checksSettled(): Promise<void> {
  await inFlight?.catch(() => undefined);
}

/** qemu-img compare against the input or the floor image, or the manifest check (test/helpers/verify.ts). */
export function checkOutput(kind: CheckKind, t: CheckTarget): Promise<CheckResult> {
  inFlight = runCheck(kind, t);
  return inFlight;
}

async function runCheck(kind: CheckKind, t: CheckTarget): Promise<CheckResult> {
  if (kind === 'manifest') {
    const result = await verifyImage(t.output, t.outputFormat, t.manifest);
    return { kind, ok: result.ok, detail: result.ok ? 'files, partition table and swap headers as the manifest says' : result.problems.slice(0, 3).join('; ') };
  }
  const source = kind === 'floor' ? t.floorInput : t.input;
  const { code, text } = await qemuImgCompare(source, t.inputFormat, t.output, t.outputFormat);
  return { kind, ok: code === 0, detail: code === 0 ? `qemu-img compare with the ${kind}: identical` : `qemu-img compare with the ${kind} (exit ${code}): ${text}` };
}
