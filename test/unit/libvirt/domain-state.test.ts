import { describe, expect, it } from 'vitest';
import { parseDomInfo, refuseUnlessShutOff } from '../../../src/libvirt/domain-state.js';
import { refusal } from '../../helpers/refusal.js';

const DOMINFO = (state: string, saved = 'no') => `Id:             -
Name:           guest
UUID:           f40e9afb-a567-4c50-9312-dc377ab171c0
OS Type:        hvm
State:          ${state}
CPU(s):         1
Max memory:     65536 KiB
Used memory:    65536 KiB
Persistent:     yes
Autostart:      disable
Managed save:   ${saved}
Security model: none
Security DOI:   0
`;

describe('domain state', () => {
  it('a shut-off domain with nothing saved may be touched', () => {
    expect(parseDomInfo(DOMINFO('shut off'))).toEqual({ state: 'shut off', managedSave: false });
    expect(() => refuseUnlessShutOff('guest', parseDomInfo(DOMINFO('shut off')))).not.toThrow();
  });

  it.each(['running', 'paused', 'in shutdown', 'pmsuspended'])('a %s domain is refused by name and state', (state) => {
    const e = refusal(() => refuseUnlessShutOff('guest', parseDomInfo(DOMINFO(state))));
    expect(e.code).toBe('DOMAIN_ACTIVE');
    expect(e.message).toBe(`domain ‘guest’ is ${state}: sparsify only works on a shut-off domain`);
  });

  it('a shut-off domain with a managed save image is refused: its saved memory refers to the disks', () => {
    const e = refusal(() => refuseUnlessShutOff('guest', parseDomInfo(DOMINFO('shut off', 'yes'))));
    expect(e.message).toMatch(/shut off with a managed save image/);
    expect(e.hint).toMatch(/managedsave-remove guest/);
  });

  it('output without a state is not a verdict', () => {
    expect(refusal(() => parseDomInfo('Name: guest\n')).code).toBe('BAD_DOMAIN');
  });
});
