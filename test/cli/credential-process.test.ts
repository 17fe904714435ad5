import { describe, expect, it } from 'vitest';
import { brokerEndpoint } from '../../src/cli/credential-process.js';

describe('brokerEndpoint', () => {
  it.each([
    ['https://broker.example.com', 'https://broker.example.com/v1/credentials'],
    ['https://broker.example.com/', 'https://broker.example.com/v1/credentials'],
    ['https://gw.example.com/tasklease', 'https://gw.example.com/tasklease/v1/credentials'],
    ['https://gw.example.com/tasklease/', 'https://gw.example.com/tasklease/v1/credentials'],
    ['https://gw.example.com/a/b?x=1#y', 'https://gw.example.com/a/b/v1/credentials'],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080/v1/credentials'],
  ])('keeps the path prefix of %s', (base, expected) => {
    expect(brokerEndpoint(base, 'v1/credentials').href).toBe(expected);
    expect(brokerEndpoint(base, '/v1/credentials').href).toBe(expected);
  });
});
