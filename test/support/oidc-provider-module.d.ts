// oidc-provider ships no type declarations; the test fixture uses a small, typed surface of it.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  const Provider: new (issuer: string, configuration: Record<string, unknown>) => {
    callback(): (request: IncomingMessage, response: ServerResponse) => void;
  };
  export default Provider;
}
