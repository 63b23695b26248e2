import { fileURLToPath } from 'node:url';

import type { DataConverter } from '@temporalio/common';

import type { Config } from './config.js';
import { AesGcmPayloadCodec } from './payload-codec.js';

/**
 * The failure converter module, given by path because the workflow sandbox cannot take a converter
 * object: the SDK bundles it into the workflow code, and clients and workers load it with require().
 * `npm run build` copies it next to the compiled files.
 */
export const FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * Builds the data converter of every Temporal client and worker of the service. It encrypts payloads
 * with the configured keys, and it encodes failure messages and stack traces so that they are encrypted too.
 */
export function dataConverter(config: Pick<Config, 'temporal'>): DataConverter {
  return {
    payloadCodecs: [new AesGcmPayloadCodec(config.temporal.payloadKeys)],
    failureConverterPath: FAILURE_CONVERTER_PATH,
  };
}
