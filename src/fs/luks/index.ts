import type { FsDriver } from '../driver.js';
import { detectLuks } from './probe.js';

/** LUKS1/LUKS2: the header at byte 0; encrypted, so no free-map reader and no mount. */
export const luksDriver: FsDriver = { types: ['luks'], detect: detectLuks };
