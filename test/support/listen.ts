import type { AddressInfo, Server } from 'node:net';

/** Listens on an ephemeral port of 127.0.0.1 (an HTTP server is a net.Server) and resolves with the port. */
export async function listenLocal(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}
