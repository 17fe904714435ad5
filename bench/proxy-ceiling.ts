/**
 * Scenario g's ceiling: the least a node:http proxy does (keep-alive
 * connections to the upstream, a header added, the response piped back), so
 * the gateway is measured against what any gateway on this runtime and
 * machine pays per call, beside the upstream called directly.
 * Usage: proxy-ceiling.ts <port> <upstream port>
 */
import { Agent, createServer, request } from 'node:http';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const bearer = `Bearer ${'x'.repeat(500)}`;
createServer((req, res) => {
  const out = request({ host: '127.0.0.1', port: upstreamPort, path: req.url!.replace(/^\/up/, ''), method: req.method, headers: { host: `127.0.0.1:${upstreamPort}`, authorization: bearer }, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  req.resume();
  out.end();
}).listen(port!, '127.0.0.1');
