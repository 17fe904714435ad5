import { describe, expect, it } from 'vitest';
import { missingDriverPatch } from '../support/driver-patch.js';

describe('the postgres.js write-scheduler patch (patches/postgres+3.4.9.patch)', () => {
  it('is applied to both builds in node_modules', () => {
    expect(missingDriverPatch('node_modules')).toEqual([]);
  });
});
