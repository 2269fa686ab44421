#!/usr/bin/env node
// A Node.js client for the OCR service, written from the proto alone: submit a file, watch
// its progress, print its text.
//
//   OCR_TARGET=localhost:50051 OCR_TOKEN=... node examples/node scan.pdf > scan.txt
//
// Needs @grpc/grpc-js and @grpc/proto-loader (`npm install --prefix examples/node`; the
// project's scripts/setup --dev does it). Works with gRPC's default 4 MiB message limits:
// documents above 3 MiB are uploaded with SubmitStream in 1 MiB chunks, and the result is
// fetched with GetResult in parts (page_size / page_token), each response under 4 MiB.
// Ctrl-C while waiting cancels the task. Progress goes to stderr, the text to stdout.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ROOT = path.resolve(__dirname, '..', '..');
const CHUNK_BYTES = 1024 * 1024;
const UNARY_LIMIT = 3 * 1024 * 1024;

// The proto-loader options that matter (see README.md here):
const definition = protoLoader.loadSync(path.join(ROOT, 'protos/ocr/v1/ocr.proto'), {
  keepCase: true, // field names as in the proto (task_id), not camelCase (taskId)
  longs: String, // uint64 fields (max_message_bytes) as strings: a JS number loses precision
  enums: String, // enum values by name ('TASK_STATE_COMPLETED'), not by number
  defaults: true, // unset fields read as their zero value, as in every other language
  oneofs: true, // a oneof's set member is named in a virtual field (request.part === 'chunk')
  includeDirs: [path.join(ROOT, 'protos'), path.join(ROOT, 'third_party/googleapis')],
});
const ocr = grpc.loadPackageDefinition(definition).ocr.v1;

function fail(message, code = 1) {
  process.stderr.write(`ocr-node: ${message}\n`);
  process.exit(code);
}

function rpcError(error) {
  const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code);
  return `${name || error.code}: ${error.details || error.message}`;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 60_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

async function submitStream(client, file, size, metadata) {
  return new Promise((resolve, reject) => {
    const call = client.SubmitStream(metadata, (error, response) =>
      error ? reject(error) : resolve(response.task),
    );
    call.write({ header: { filename: path.basename(file), size_bytes: String(size) } });
    const input = fs.createReadStream(file, { highWaterMark: CHUNK_BYTES });
    input.on('data', (chunk) => {
      if (!call.write({ chunk })) {
        input.pause(); // back-pressure: never more than a few chunks in memory
        call.once('drain', () => input.resume());
      }
    });
    input.on('end', () => call.end());
    input.on('error', (error) => {
      call.cancel();
      reject(error);
    });
  });
}

async function submit(client, file, metadata) {
  const size = fs.statSync(file).size;
  if (size > UNARY_LIMIT) {
    return submitStream(client, file, size, metadata);
  }
  const request = { content: fs.readFileSync(file), filename: path.basename(file) };
  return (await unary(client, 'Submit', request, metadata)).task;
}

function watch(client, taskId, metadata) {
  return new Promise((resolve, reject) => {
    let last = null;
    const call = client.WatchTask({ task_id: taskId }, metadata);
    call.on('data', ({ task }) => {
      last = task;
      const progress =
        task.state === 'TASK_STATE_PENDING'
          ? `queue position ${task.queue_position}`
          : `${task.pages_done}/${task.pages_total} pages`;
      process.stderr.write(`${taskId}: ${task.state.replace('TASK_STATE_', '')} ${progress}\n`);
    });
    call.on('error', reject);
    call.on('end', () => resolve(last));
  });
}

async function printResult(client, taskId, metadata) {
  let pageToken = '';
  let first = true;
  do {
    const request = { task_id: taskId, page_size: 1000, page_token: pageToken };
    const response = await unary(client, 'GetResult', request, metadata);
    if (response.result) {
      process.stdout.write((first ? '' : '\n\f') + response.result.text); // as the server joins pages
      first = false;
    }
    pageToken = response.next_page_token;
  } while (pageToken);
}

async function main() {
  const file = process.argv[2];
  if (!file) fail('usage: node examples/node FILE (with OCR_TARGET and OCR_TOKEN set)', 2);
  if (!fs.existsSync(file)) fail(`${file}: no such file`, 2);
  const token = process.env.OCR_TOKEN;
  if (!token) fail('set OCR_TOKEN to your access token', 2);
  const target = process.env.OCR_TARGET || 'localhost:50051';

  // Plaintext on loopback; with OCR_CA_FILE (PEM), TLS trusting that CA.
  const credentials = process.env.OCR_CA_FILE
    ? grpc.credentials.createSsl(fs.readFileSync(process.env.OCR_CA_FILE))
    : grpc.credentials.createInsecure();
  const client = new ocr.OcrService(target, credentials);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);

  const task = await submit(client, file, metadata);
  process.stderr.write(`ocr-node: task ${task.task_id} submitted\n`);
  process.once('SIGINT', async () => {
    await unary(client, 'Cancel', { task_id: task.task_id }, metadata).catch(() => {});
    fail(`interrupted: task ${task.task_id} cancelled`, 130);
  });
  const final = await watch(client, task.task_id, metadata);
  if (!final || final.state !== 'TASK_STATE_COMPLETED') {
    const reason = final && final.error ? `: ${final.error.message}` : '';
    fail(`task ${task.task_id} ${final ? final.state : 'lost'}${reason}`);
  }
  await printResult(client, task.task_id, metadata);
  client.close();
}

main().catch((error) => fail(error.code !== undefined ? rpcError(error) : error.message));
