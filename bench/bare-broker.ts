/** A bare aedes broker, the baseline for twin-ingest: prints its port, then serves. */
import { Aedes } from 'aedes';
import { createServer } from 'node:net';

const broker = await Aedes.createBroker({ maxClientsIdLength: 256 });
const server = createServer(broker.handle);
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }));
});
