/** The external programs sparsify may call, and the Debian package that provides each. */
const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  'qemu-img': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  'qemu-storage-daemon': 'qemu-system-common',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  fstrim: 'util-linux',
  setpriv: 'util-linux',
  'ntfs-3g': 'ntfs-3g',
  fusermount: 'fuse3',
  fusermount3: 'fuse3',
  guestfish: 'libguestfs-tools',
  'virt-sparsify': 'libguestfs-tools',
  nbdcopy: 'libnbd-bin',
  nbdfuse: 'libnbd-bin',
  'e2fsck': 'e2fsprogs',
  'xfs_repair': 'xfsprogs',
  'btrfs': 'btrfs-progs',
  'fsck.fat': 'dosfstools',
  ntfsfix: 'ntfs-3g',
  virsh: 'libvirt-clients',
};

/** The package to name in a TOOL_MISSING hint. */
export function packageOf(tool: string): string {
  return TOOL_PACKAGES[tool] ?? tool;
}
