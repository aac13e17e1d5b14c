/** How many disks a batch works on at once. */
import { availableParallelism, totalmem } from 'node:os';

/**
 * What one disk's run may take at its peak: sparsify's own process (under 256 MiB, README
 * "Memory") and its qemu-storage-daemons; a disk the appliance takes adds a VM, so a GiB each.
 */
const MEMORY_PER_JOB_BYTES = 1024 ** 3;

/** The default of --jobs: one per core, no more than the disks, and a GiB of memory each. */
export function defaultJobs(disks: number, cores = availableParallelism(), memoryBytes = totalmem()): number {
  return Math.max(1, Math.min(disks, cores, Math.floor(memoryBytes / MEMORY_PER_JOB_BYTES)));
}
