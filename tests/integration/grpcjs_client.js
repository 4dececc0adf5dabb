// A gRPC client using @grpc/grpc-js-xds (the pinned npm package): a channel to xds:///NAME,
// driven line by line from stdin by the Python test. Commands:
//   who N   -> prints {"counts": {...}} after N unary calls to /test.Echo/Who
//   quit
// GRPC_XDS_BOOTSTRAP names the bootstrap file, as for every gRPC xDS client.
'use strict';
const grpc = require('@grpc/grpc-js');
require('@grpc/grpc-js-xds').register();
const readline = require('readline');

const target = process.argv[2] || 'xds:///cart';
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const identity = (x) => x;

function call() {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 5000);
    client.makeUnaryRequest('/test.Echo/Who', identity, identity, Buffer.alloc(0), { deadline },
      (err, value) => (err ? reject(err) : resolve(value.toString())));
  });
}

async function who(n) {
  const counts = {};
  for (let i = 0; i < n; i++) {
    try {
      const name = await call();
      counts[name] = (counts[name] || 0) + 1;
    } catch (e) {
      counts['error:' + e.code] = (counts['error:' + e.code] || 0) + 1;
    }
  }
  return counts;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'who') {
    process.stdout.write(JSON.stringify({ counts: await who(parseInt(arg, 10) || 20) }) + '\n');
  } else if (cmd === 'quit') {
    client.close();
    process.exit(0);
  }
});
