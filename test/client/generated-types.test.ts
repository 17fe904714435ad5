// CI fails when src/client/openapi.ts no longer matches the broker's routes:
// the types are generated again, in memory, and compared with the committed file.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { CLIENT_TYPES_PATH, clientTypesSource } from '../../scripts/client-types.js';

it('src/client/openapi.ts is what `npm run client:generate` writes today', async () => {
  const committed = readFileSync(CLIENT_TYPES_PATH, 'utf8');
  const fresh = await clientTypesSource();
  // On failure: run `npm run client:generate` and commit the result.
  expect(committed === fresh, 'src/client/openapi.ts is stale: run `npm run client:generate`').toBe(true);
});
