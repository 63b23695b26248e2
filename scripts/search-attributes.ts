import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';

import { LIFECYCLE_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';

/**
 * Adds the lifecycle search attributes that `namespace` lacks, as Keyword attributes, and returns the
 * names it added. The operator service rejects adding one that exists, so the existing ones are read first.
 */
export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set([...Object.keys(existing.customAttributes ?? {}), ...Object.keys(existing.systemAttributes ?? {})]);
  const missing = LIFECYCLE_SEARCH_ATTRIBUTES.map((key) => key.name).filter((name) => !known.has(name));
  if (missing.length === 0) {
    return [];
  }

  const keyword = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((name) => [name, keyword])),
  });
  return missing;
}
