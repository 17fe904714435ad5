// Preloaded (NODE_OPTIONS=--import) into the broker child of the shutdown test:
// writes "ACCEPTED <peer port>" to stderr for every TCP connection the process
// accepts, so the test can tell a connection the server took from one the
// kernel had queued and reset when the listener closed.
import { writeSync } from 'node:fs';
import net from 'node:net';

const emit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, ...args) {
  if (event === 'connection') writeSync(2, `ACCEPTED ${args[0].remotePort}\n`);
  return emit.call(this, event, ...args);
};
