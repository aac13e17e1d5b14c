import type { FsDriver } from '../driver.js';
import { readNtfsFreeMap } from './free-map.js';
import { detectNtfs } from './probe.js';
import { readNtfsState } from './state.js';

/** NTFS: the boot sector at byte 0; dirty or hibernated from $Volume, $LogFile, hiberfil.sys; free space from $Bitmap. */
export const ntfsDriver: FsDriver = {
  types: ['ntfs'],
  detect: detectNtfs,
  readState: readNtfsState,
  readFreeMap: readNtfsFreeMap,
  says: {
    dirty: 'Windows did not shut down cleanly: the dirty flag is set, chkdsk was interrupted, or $LogFile has changes to replay',
    hibernated: 'holds a Windows hibernation image (hibernated, or shut down with Fast Startup)',
  },
};
