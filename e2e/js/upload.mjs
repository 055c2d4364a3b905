// upload.mjs uploads one file to Roughy with tus-js-client (Node build),
// driven by the Go e2e tests (e2e/tusjs_test.go).
//
// Environment:
//   ROUGHY_ENDPOINT  TUS creation URL (…/api/v1/assets/upload-resumable)
//   ROUGHY_KEY       API key
//   ROUGHY_FILE      file to upload
//   ROUGHY_MODE      plain | abort-resume | parallel | deferred | creation-data
//   ROUGHY_CHUNK     chunkSize in bytes (default 5 MiB)
//   ROUGHY_STORE     URL storage file (abort-resume)
//   ROUGHY_PROTOCOL  tus-v1 (default) | ietf-draft-03 | ietf-draft-05
//
// On success it prints one JSON line: {"url", "asset_id", …mode facts}.
import fs from 'node:fs'
import { PassThrough } from 'node:stream'
import * as tus from 'tus-js-client'

const env = (name, def) => {
  const v = process.env[name] ?? def
  if (v === undefined) throw new Error(`${name} is not set`)
  return v
}
const endpoint = env('ROUGHY_ENDPOINT')
const key = env('ROUGHY_KEY')
const file = env('ROUGHY_FILE')
const mode = env('ROUGHY_MODE', 'plain')
const chunkSize = Number(env('ROUGHY_CHUNK', String(5 * 1024 * 1024)))
const size = fs.statSync(file).size

// facts collects what the Go test checks besides the final asset.
const facts = { mode, size, requests: [] }
let assetId = null

// Asset id: the JSON body of the creating POST (not of partial uploads).
async function onAfterResponse(req, res) {
  facts.requests.push(`${req.getMethod()} ${res.getStatus()} ${res.getHeader('Upload-Offset') ?? ''}`.trim())
  if (req.getMethod() !== 'POST' || res.getStatus() !== 201) return
  if ((req.getHeader('Upload-Concat') ?? '').startsWith('partial')) return
  const body = JSON.parse(res.getBody())
  if (!body.asset?.id) throw new Error(`POST body without asset.id: ${res.getBody()}`)
  assetId = body.asset.id
}

function options(extra) {
  return {
    endpoint,
    headers: { Authorization: `Bearer ${key}` },
    metadata: { type: 'video', content_type: 'video/mp4', filename: 'tus-js.mp4' },
    chunkSize,
    protocol: env('ROUGHY_PROTOCOL', 'tus-v1'),
    retryDelays: [0, 1000, 3000, 5000],
    onAfterResponse,
    ...extra,
  }
}

// run starts an upload and resolves on success.
function run(input, extra) {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(input, options({ ...extra, onSuccess: () => resolve(up), onError: reject }))
    up.start()
  })
}

async function abortResume() {
  const urlStorage = new tus.FileUrlStorage(env('ROUGHY_STORE'))
  // First run: abort() while the PATCH that crosses 40% is in flight (a
  // moment after it starts), so the server sees a client vanish mid-body.
  let abortPatchOffset = null
  await new Promise((resolve, reject) => {
    const up = new tus.Upload(
      fs.createReadStream(file),
      options({
        urlStorage,
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onBeforeRequest: (req) => {
          const offset = Number(req.getHeader('Upload-Offset'))
          if (req.getMethod() !== 'PATCH' || abortPatchOffset !== null || offset + chunkSize < 0.4 * size) return
          abortPatchOffset = offset
          setTimeout(() => up.abort().then(resolve, reject), 1)
        },
        onSuccess: () => reject(new Error('first run finished despite abort()')),
        onError: reject,
      }),
    )
    up.start()
  })
  // Bytes the server can have seen: at most the aborted PATCH's body.
  facts.abort_patch_offset = abortPatchOffset
  facts.aborted_at = Math.min(abortPatchOffset + chunkSize, size)
  // Second run: find the stored URL and resume from the server's offset.
  const input = fs.createReadStream(file)
  const probe = new tus.Upload(input, options({ urlStorage }))
  const previous = await probe.findPreviousUploads()
  if (previous.length !== 1) throw new Error(`findPreviousUploads: got ${previous.length}, want 1`)
  facts.stored_url = previous[0].uploadUrl
  let firstPatchOffset = null
  let resumeHeadOffset = null
  const up = await new Promise((resolve, reject) => {
    const up = new tus.Upload(
      input,
      options({
        urlStorage,
        removeFingerprintOnSuccess: true,
        onBeforeRequest: (req) => {
          if (req.getMethod() === 'PATCH' && firstPatchOffset === null) {
            firstPatchOffset = Number(req.getHeader('Upload-Offset'))
          }
        },
        onAfterResponse: async (req, res) => {
          if (req.getMethod() === 'HEAD' && resumeHeadOffset === null) {
            resumeHeadOffset = Number(res.getHeader('Upload-Offset'))
          }
          if (req.getMethod() === 'POST') throw new Error('resume created a new upload')
          await onAfterResponse(req, res)
        },
        onSuccess: () => resolve(up),
        onError: reject,
      }),
    )
    up.resumeFromPreviousUpload(previous[0])
    up.start()
  })
  facts.resume_head_offset = resumeHeadOffset
  facts.first_patch_offset = firstPatchOffset
  return up
}

async function main() {
  let up
  switch (mode) {
    case 'plain':
      up = await run(fs.createReadStream(file), {})
      break
    case 'abort-resume':
      up = await abortResume()
      break
    case 'parallel':
      up = await run(fs.createReadStream(file), { parallelUploads: 3 })
      break
    case 'deferred': {
      // A plain Readable has no known size, as for a live recording.
      const stream = fs.createReadStream(file).pipe(new PassThrough())
      up = await run(stream, { uploadLengthDeferred: true })
      break
    }
    case 'creation-data':
      up = await run(fs.readFileSync(file), { uploadDataDuringCreation: true })
      break
    default:
      throw new Error(`unknown ROUGHY_MODE ${mode}`)
  }
  facts.url = up.url
  facts.asset_id = assetId
  process.stdout.write(JSON.stringify(facts) + '\n')
}

main().catch((err) => {
  console.error(`upload.mjs (${mode}) failed:`, err?.stack ?? err)
  process.exit(1)
})
