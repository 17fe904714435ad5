/**
 * Scenario g's upstream: node:http answering every request with a small JSON
 * body, the cheapest upstream there is, so that what the gateway adds shows.
 * Usage: upstream.ts <port>
 */
import { createServer } from 'node:http';

const body = JSON.stringify({ ok: true });
createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body));
}).listen(Number(process.argv[2]), '127.0.0.1');
