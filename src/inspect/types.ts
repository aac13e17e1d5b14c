/** What inspection found on a disk: libguestfs' inspection, in sparsify's own words. */

/** One filesystem as the appliance's blkid sees it. */
export interface InspectedFilesystem {
  /** The appliance's name for it (/dev/sda1, /dev/VG/LV, btrfsvol:/dev/sda2/@root…). */
  readonly device: string;
  /** vfs type (ext4, xfs, swap, …); absent when there is none (an empty partition). */
  readonly type?: string;
  readonly label?: string;
  readonly uuid?: string;
}

/** One operating system, found at its root filesystem. */
export interface InspectedOs {
  readonly root: string;
  /** linux, windows, freebsd, … ('unknown' when libguestfs cannot tell). */
  readonly type: string;
  readonly arch?: string;
  readonly distro?: string;
  readonly productName?: string;
  readonly productVariant?: string;
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly packageFormat?: string;
  readonly packageManagement?: string;
  readonly hostname?: string;
  readonly osinfo?: string;
  /** The guest's mount table (fstab or the registry), shortest mount point first. */
  readonly mountpoints: readonly { readonly mountpoint: string; readonly device: string }[];
  /** The filesystems that belong to this operating system. */
  readonly filesystems: readonly InspectedFilesystem[];
}

/** Everything --inspect reports about one disk. */
export interface DiskInspection {
  readonly disk: string;
  readonly format: string;
  readonly operatingSystems: readonly InspectedOs[];
  /** Every filesystem on the disk, an operating system's or not. */
  readonly filesystems: readonly InspectedFilesystem[];
}
