import type { Server } from 'node:http';

/** examples/ssf-receiver.mjs: accepts tasklease's SETs for `clientId`; `revoked` holds the jti of every token told to have ended. */
export function createSsfReceiver(options: { transmitter: string; clientId: string; authorization?: string }): { server: Server; revoked: Set<string> };
