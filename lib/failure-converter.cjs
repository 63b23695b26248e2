// The failure converter of the workflow bundle and of the worker's activities. The SDK loads it by file
// path (`failureConverterPath`) with require(), and the workflow bundler inlines it, so it is plain
// CommonJS that needs no compilation.
//
// encodeCommonAttributes moves each failure's message and stack trace into an encoded payload, so the
// payload codec encrypts them like every other payload. History then shows only "Encoded failure".
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
