import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CACHE_DIR,
  APPLIANCE_MEMSIZE_MIB,
  buildEnv,
  cacheKey,
  kvmProblemOf,
  missingLibguestfsReason,
  parseFound,
  parseVerdict,
  withVerdict,
  CACHED_VERDICTS,
  tcgNotice,
  type HostFactsKey,
} from '../../../../src/engines/appliance/host.js';

const facts: HostFactsKey = {
  libguestfsVersion: '1.48.6',
  qemuVersion: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)',
  kernel: '6.1.0-40-amd64',
  uid: 1000,
  kvmAccess: false,
  settings: {},
};

describe('parseFound', () => {
  it('reads the version and the hypervisor of `guestfish version : get-hv`', () => {
    const out = 'major: 1\nminor: 48\nrelease: 6\nextra: \n/usr/bin/qemu-system-x86_64\n';
    expect(parseFound(out)).toEqual({ version: '1.48.6', hv: '/usr/bin/qemu-system-x86_64' });
  });

  it('refuses output that is not that', () => {
    expect(() => parseFound('major: 1\nminor: 48\n/usr/bin/qemu\n')).toThrow(/unexpected output/);
    expect(() => parseFound('major: 1\nminor: 48\nrelease: 6\nextra: \n')).toThrow(/unexpected output/);
  });
});

describe('cacheKey', () => {
  it('changes with every fact the verdict rests on', () => {
    const base = cacheKey(facts);
    const changed: HostFactsKey[] = [
      { ...facts, libguestfsVersion: '1.48.7' },
      { ...facts, qemuVersion: 'QEMU emulator version 8.0.0' },
      { ...facts, kernel: '6.1.0-41-amd64' },
      { ...facts, uid: 0 },
      { ...facts, kvmAccess: true },
      { ...facts, settings: { LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' } },
    ];
    const keys = new Set([base, ...changed.map(cacheKey)]);
    expect(keys.size).toBe(changed.length + 1);
  });

  it('does not depend on the order of the settings', () => {
    const a = cacheKey({ ...facts, settings: { LIBGUESTFS_HV: '/q', LIBGUESTFS_BACKEND: 'direct' } });
    const b = cacheKey({ ...facts, settings: { LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_HV: '/q' } });
    expect(a).toBe(b);
  });
});

describe('parseVerdict', () => {
  const key = cacheKey(facts);

  it('reads back what was written for the same key', () => {
    const verdict = { key, accel: 'tcg', kvmProblem: 'failed to set MSR 0x10a to 0x69', launchMs: 15000 } as const;
    expect(parseVerdict(JSON.stringify(verdict), key)).toEqual(verdict);
  });

  it('ignores a verdict of another key, a damaged file, or a foreign one', () => {
    expect(parseVerdict(JSON.stringify({ key: 'other', accel: 'kvm', launchMs: 1 }), key)).toBeUndefined();
    expect(parseVerdict('{"key":', key)).toBeUndefined();
    expect(parseVerdict('', key)).toBeUndefined();
    expect(parseVerdict(JSON.stringify({ key, accel: 'fast', launchMs: 1 }), key)).toBeUndefined();
    expect(parseVerdict(JSON.stringify({ key, accel: 'kvm' }), key)).toBeUndefined();
  });

  it('keeps a verdict per key: a run with other LIBGUESTFS_* settings does not push out the first one', () => {
    const other = cacheKey({ ...facts, settings: { LIBGUESTFS_MEMSIZE: '1024' } });
    const first = { key, accel: 'tcg', launchMs: 15000 } as const;
    const second = { key: other, accel: 'tcg', launchMs: 16000 } as const;
    const text = withVerdict(withVerdict('', first), second);
    expect(parseVerdict(text, key)).toEqual(first);
    expect(parseVerdict(text, other)).toEqual(second);
    // An earlier version's one-verdict file is read, and kept when another key is added.
    expect(parseVerdict(withVerdict(JSON.stringify(first), second), key)).toEqual(first);
  });

  it('keeps the newest CACHED_VERDICTS keys, and one verdict per key', () => {
    let text = '';
    for (let i = 0; i <= CACHED_VERDICTS; i++) text = withVerdict(text, { key: `k${i}`, accel: 'kvm', launchMs: i });
    expect(parseVerdict(text, 'k0')).toBeUndefined();
    expect(parseVerdict(text, `k${CACHED_VERDICTS}`)).toEqual({ key: `k${CACHED_VERDICTS}`, accel: 'kvm', launchMs: CACHED_VERDICTS });
    text = withVerdict(text, { key: 'k1', accel: 'tcg', launchMs: 99 });
    expect(JSON.parse(text).verdicts.filter((v: { key: string }) => v.key === 'k1')).toEqual([{ key: 'k1', accel: 'tcg', launchMs: 99 }]);
  });
});

describe('buildEnv', () => {
  it('sets the cache directory explicitly, never from TMPDIR, and the direct backend', () => {
    const env = buildEnv({ TMPDIR: '/home/me/build', PATH: '/usr/bin' }, DEFAULT_CACHE_DIR, 'kvm');
    expect(env).toEqual({ LIBGUESTFS_CACHEDIR: '/var/tmp', LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_MEMSIZE: String(APPLIANCE_MEMSIZE_MIB) });
  });

  it('gives the appliance APPLIANCE_MEMSIZE_MIB, not libguestfs\' 1280 MiB, unless the user set LIBGUESTFS_MEMSIZE', () => {
    expect(APPLIANCE_MEMSIZE_MIB).toBeLessThan(1280);
    expect(buildEnv({}, '/var/tmp', 'tcg')['LIBGUESTFS_MEMSIZE']).toBe(String(APPLIANCE_MEMSIZE_MIB));
    expect(buildEnv({ LIBGUESTFS_MEMSIZE: '2048' }, '/var/tmp', 'tcg')['LIBGUESTFS_MEMSIZE']).toBe('2048');
  });

  it('adds force_tcg when KVM is unusable, after the user\'s own settings', () => {
    expect(buildEnv({}, '/var/tmp', 'tcg')['LIBGUESTFS_BACKEND_SETTINGS']).toBe('force_tcg');
    const env = buildEnv({ LIBGUESTFS_BACKEND_SETTINGS: 'network_backend=passt' }, '/var/tmp', 'tcg');
    expect(env['LIBGUESTFS_BACKEND_SETTINGS']).toBe('network_backend=passt:force_tcg');
  });

  it("keeps the user's LIBGUESTFS_* settings and backend", () => {
    const user = { LIBGUESTFS_BACKEND: 'libvirt', LIBGUESTFS_BACKEND_SETTINGS: 'force_kvm', LIBGUESTFS_MEMSIZE: '2048', LIBGUESTFS_CACHEDIR: '/srv/cache' };
    expect(buildEnv(user, '/srv/cache', 'user')).toEqual(user);
  });
});

describe('messages', () => {
  it('names the package to install when libguestfs is missing, in one line', () => {
    const reason = missingLibguestfsReason();
    expect(reason).toMatch(/libguestfs-tools/);
    expect(reason).not.toMatch(/\n/);
  });

  it("takes qemu's own reason from a failed KVM probe", () => {
    const stderr =
      'qemu-system-x86_64: warning: host doesn\'t support requested feature: CPUID.01H:ECX.pni [bit 0]\n' +
      'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n' +
      "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
    expect(kvmProblemOf(stderr, 'killed by SIGABRT')).toBe('failed to set MSR 0x10a to 0x69');
    expect(kvmProblemOf('/usr/bin/qemu-system-x86_64: Could not access KVM kernel module: Permission denied\n', 'exit code 1')).toBe(
      'Could not access KVM kernel module: Permission denied',
    );
    expect(kvmProblemOf('', 'killed by SIGABRT')).toBe('qemu with KVM: killed by SIGABRT');
  });

  it('says once why TCG is used', () => {
    expect(tcgNotice('failed to set MSR 0x10a to 0x69')).toMatch(/^KVM is not usable here \(failed to set MSR 0x10a to 0x69\): .*TCG/);
  });
});
