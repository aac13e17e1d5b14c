import { describe, expect, it } from 'vitest';
import { parseDomainNames, selectDomains } from '../../../src/libvirt/domain-filter.js';

const names = ['web-1', 'web-2', 'db', 'Web-3', '.hidden', 'web-10'];

describe('--all-domains --filter', () => {
  it('no filter takes every domain, in virsh order', () => {
    expect(selectDomains(names, [])).toEqual(names);
  });

  it('a shell glob on the whole name, case-sensitive as libvirt names are', () => {
    expect(selectDomains(names, ['web-*'])).toEqual(['web-1', 'web-2', 'web-10']);
    expect(selectDomains(names, ['web-?'])).toEqual(['web-1', 'web-2']);
    expect(selectDomains(names, ['web-[2-9]'])).toEqual(['web-2']);
    expect(selectDomains(names, ['web'])).toEqual([]);
    expect(selectDomains(names, ['*'])).toEqual(names);
  });

  it('several filters: a name matching any; braces as in the shell', () => {
    expect(selectDomains(names, ['db', 'Web-*'])).toEqual(['db', 'Web-3']);
    expect(selectDomains(names, ['{db,web-1}'])).toEqual(['web-1', 'db']);
  });

  it('reads virsh list --all --name', () => {
    expect(parseDomainNames('web-1\n db \n\n')).toEqual(['web-1', 'db']);
    expect(parseDomainNames('\n')).toEqual([]);
  });
});
