// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'out/', 'node_modules/', 'coverage/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        // A leading underscore marks a deliberately unused binding (callback signatures, tuple slots, rest-omit).
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Numbers, booleans and null/undefined print unambiguously in messages and log lines.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true }],
      // `x => doSomething(x)` callbacks and `return send(...)` early exits from void functions are idiomatic; void used as data is still flagged.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true, ignoreVoidOperator: true, ignoreVoidReturningFunctions: true }],
      eqeqeq: ['error', 'smart'],
      'no-console': 'off',
      // File names and CSV cells are checked for control characters on purpose.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: {
      // vitest's asymmetric matchers (expect.any, expect.stringMatching, ...) are typed any by design.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      // Async generators and async fakes stand in for real async sources; they have nothing to await.
      '@typescript-eslint/require-await': 'off',
      // Optional chains keep afterAll safe when beforeAll failed half-way (the rule cannot see the hook's assignments)
      // and turn a missing value into a failed assertion rather than a TypeError.
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  {
    // Plain JS config files are outside the TypeScript project: keep them on the untyped rules.
    files: ['**/*.{js,mjs,cjs}'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable' } },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { URL: 'readonly', process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
  },
  {
    // Only config/ may read the environment: everything else gets a parsed Config.
    files: ['src/**/*.ts'],
    ignores: ['src/config/**', 'src/cli/main.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read settings through src/config.' }],
    },
  },
  {
    // The D-ID client is the only module that speaks HTTP to D-ID; adapters never import BullMQ.
    files: ['src/did/**/*.ts', 'src/download/**/*.ts', 'src/manifest/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'bullmq', message: 'Only queue/ and worker/ speak BullMQ.' }] }],
    },
  },
);
