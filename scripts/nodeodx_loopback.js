// Preloaded into a real NodeODX by the test helpers (`node -r nodeodx_loopback.js index.js`).
// NodeODX has no host flag: it listens on every interface and binds its progress receiver to UDP
// 0.0.0.0:6367, so two nodes on one machine collide and neither stays on loopback. This keeps every
// socket it opens on 127.0.0.1 and gives the progress receiver a port of its own (nothing sends
// progress in test mode), without touching NodeODX's code.
'use strict';
const net = require('net');
const dgram = require('dgram');
const LOOPBACK = '127.0.0.1';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] !== null && typeof args[0] === 'object') {
    args[0] = Object.assign({}, args[0], { host: LOOPBACK });
  } else if (typeof args[1] === 'string') {
    args[1] = LOOPBACK;                      // listen(port, host, ...)
  } else {
    args.splice(1, 0, LOOPBACK);             // listen(port[, backlog][, callback])
  }
  return listen.apply(this, args);
};

const bind = dgram.Socket.prototype.bind;
dgram.Socket.prototype.bind = function (...args) {
  const callback = args.find((a) => typeof a === 'function');
  return bind.call(this, { port: 0, address: LOOPBACK }, callback);
};
