// The TypeScript source openapi-typescript prints for an OpenAPI document.
import openapiTS, { astToString } from 'openapi-typescript';

export async function toTypeScript(document) {
  return astToString(await openapiTS(document));
}
