/**
 * CloudCore's certificate service (port 10002): GET /ca.crt answers the CA in DER; GET /edge.crt
 * (with the CSR's DER as body) signs for a valid Bearer JWT, or for a TLS client certificate of
 * the CA naming the node in the NodeName header; anything else gets a plain-text 401.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { CsrError, type CertificateAuthority } from './ca.js';
import { jwtProblem } from './token.js';

export interface IssuedCertificate {
  node: string;
  cn: string;
  o: string;
  via: 'token' | 'client-cert';
}

export interface CertificateServiceState {
  ca: CertificateAuthority;
  edgeCertDays: number;
  issued: IssuedCertificate[];
  errors: string[];
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function answer(res: ServerResponse, status: number, body: Buffer | string): void {
  res.writeHead(status, typeof body === 'string' ? { 'Content-Type': 'text/plain; charset=utf-8' } : {});
  res.end(body);
}

/** Why the client certificate does not entitle the caller to a certificate for `node`, or undefined. */
function clientCertificateProblem(socket: TLSSocket, node: string): string | undefined {
  if (!socket.authorized) return `client certificate not accepted: ${String(socket.authorizationError)}`;
  const cert = new X509Certificate(socket.getPeerCertificate().raw);
  if (!cert.keyUsage?.includes(CLIENT_AUTH)) return 'client certificate is not for client authentication';
  const subject = Object.fromEntries(cert.subject.split('\n').map((line) => line.split(/=(.*)/s, 2) as [string, string]));
  if (subject.O === 'system:nodes' && subject.CN === `system:node:${node}`) return undefined;
  return `client certificate subject ${cert.subject.replace(/\n/g, ', ')} is not O=system:nodes, CN=system:node:${node}`;
}

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function edgeCertificate(state: CertificateServiceState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const csr = await body(req);
  const node = req.headers.nodename;
  if (typeof node !== 'string' || !node) return answer(res, 401, 'missing NodeName header');
  const socket = req.socket as TLSSocket;
  let via: IssuedCertificate['via'];
  if (Object.keys(socket.getPeerCertificate()).length > 0) {
    const problem = clientCertificateProblem(socket, node);
    if (problem) return answer(res, 401, problem);
    via = 'client-cert';
  } else {
    const bearer = (req.headers.authorization ?? '').split(' ');
    if (bearer.length !== 2) return answer(res, 401, 'Invalid authorization token');
    const problem = jwtProblem(bearer[1]!, state.ca.keySec1);
    if (problem) return answer(res, 401, `Invalid authorization token: ${problem}`);
    via = 'token';
  }
  try {
    const signed = await state.ca.signRequest(csr, state.edgeCertDays);
    state.issued.push({ node, cn: signed.cn, o: signed.o, via });
    answer(res, 200, signed.der);
  } catch (error) {
    if (!(error instanceof CsrError)) throw error;
    state.errors.push(`bad CSR from ${node}: ${error.message}`);
    answer(res, 500, `fail to sign the certificate: ${error.message}`);
  }
}

export function certificateService(state: CertificateServiceState): RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'https://cloudcore').pathname;
    if (req.method !== 'GET') return answer(res, 405, 'method not allowed');
    if (path === '/ca.crt') return answer(res, 200, state.ca.der);
    if (path !== '/edge.crt') return answer(res, 404, 'not found');
    edgeCertificate(state, req, res).catch((error: Error) => {
      state.errors.push(`certificate service: ${error.message}`);
      if (!res.headersSent) answer(res, 500, error.message);
    });
  };
}
