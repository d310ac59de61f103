import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { FileParsers } from '../config/index.ts';
import { parseHtpasswd } from '../http/index.ts';
import { loadPublicKey, parseKevCatalog, parseTrustedRoot } from '../trust/index.ts';

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every PEM certificate in a bundle; throws unless there is at least one and all parse. */
function certificates(content: Buffer, what: string): X509Certificate[] {
  const blocks = content.toString('utf8').match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) throw new Error(`no PEM certificate in the ${what}`);
  return blocks.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch {
      throw new Error(`certificate ${i + 1} of the ${what} does not parse`);
    }
  });
}

/**
 * How `serve` reads each kind of file the config names, for `loadConfig({ files })`: the trust
 * module's own key and trusted-root loaders, the htpasswd parser of pull auth, the KEV parser, and
 * node:tls for certificates and keys. A file these accept is one `serve` starts with.
 */
export const fileParsers: FileParsers = {
  'public-key': (content, _file, name) => loadPublicKey(content.toString('utf8'), name),
  'trusted-root': (content) => parseTrustedRoot(content, 'the file'),
  'kev-catalog': (content) => parseKevCatalog(content),
  htpasswd: (content, file) => parseHtpasswd(content.toString('utf8'), file),
  // A CA bundle with no certificate in it is accepted by node:tls and fails only at the first
  // connection (upstream caFile) or the first client certificate (server.tls.clientCAFile).
  'ca-bundle': (content) => certificates(content, 'CA bundle'),
  'tls-cert': (content) => {
    certificates(content, 'certificate file');
    createSecureContext({ cert: content });
  },
  'tls-key': (content) => {
    try {
      createPrivateKey(content);
    } catch {
      throw new Error('not a PEM private key');
    }
  },
  tlsPair: (cert, key) => {
    try {
      createSecureContext({ cert, key });
    } catch {
      throw new Error('the private key does not belong to server.tls.certFile');
    }
  },
};
