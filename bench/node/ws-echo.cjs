// Node's `ws` echo server for `holdfast-bench` side-by-side runs, configured as the ws README
// shows (WebSocketServer, message handler sending the data back), with permessage-deflate off
// as the other servers have it. Usage: node ws-echo.cjs PORT (0: any); prints "listening on".
const { WebSocketServer } = require('ws');
const port = parseInt(process.argv[2] || '0', 10);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
