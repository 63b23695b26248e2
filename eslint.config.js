import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.data/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node built-ins, no clients, and
    // activities only as types, or replay breaks.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'Workflow code must not use Node built-ins; do it in an activity.' },
            {
              group: ['../activities/*', '../lib/*', '../db/*', '../api/*'],
              allowTypeImports: true,
              message: 'Workflows may import activities and other modules only as types.',
            },
          ],
          paths: ['fs', 'path', 'crypto', 'http', 'https', 'child_process', 'knex', 'pg', 'objection', '@sendgrid/mail'].map((name) => ({
            name,
            message: 'Workflow code must not use I/O modules; do it in an activity.',
          })),
        },
      ],
    },
  },
  {
    // CommonJS modules that the Temporal SDK loads by path with require().
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
);
