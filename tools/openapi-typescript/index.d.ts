/** The TypeScript source openapi-typescript prints for an OpenAPI document (an object, not a URL). */
export function toTypeScript(document: object): Promise<string>;
