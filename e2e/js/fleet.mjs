// fleet.mjs uploads several files at once with tus-js-client (Node build)
// and its DEFAULT options (no retryDelays: 0, 1, 3, 5 s), driven by the Go
// test e2e/fleet TestFleetTusJSKills, which kills nodes behind a balancer
// meanwhile.
//
// Environment:
//   ROUGHY_ENDPOINT  TUS creation URL (the balancer's)
//   ROUGHY_KEY       API key
//   ROUGHY_FILES     files to upload, comma-separated
//   ROUGHY_CHUNK     chunkSize in bytes
//
// It prints one JSON line: [{file, url, asset_id, error, statuses}], one
// entry per file, and exits 0 whatever became of the uploads (the Go test
// judges them).
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const endpoint = process.env.ROUGHY_ENDPOINT
const key = process.env.ROUGHY_KEY
const files = process.env.ROUGHY_FILES.split(',')
const chunkSize = Number(process.env.ROUGHY_CHUNK)

function upload(file) {
  const result = { file, url: null, asset_id: null, error: null, statuses: {} }
  return new Promise((resolve) => {
    const up = new tus.Upload(fs.readFileSync(file), {
      endpoint,
      headers: { Authorization: `Bearer ${key}` },
      metadata: { type: 'video', content_type: 'video/mp4', filename: file.split('/').pop() },
      chunkSize,
      onAfterResponse: (req, res) => {
        const k = `${req.getMethod()} ${res.getStatus()}`
        result.statuses[k] = (result.statuses[k] ?? 0) + 1
        if (req.getMethod() === 'POST' && res.getStatus() === 201) {
          result.asset_id = JSON.parse(res.getBody()).asset.id
        }
      },
      onSuccess: () => {
        result.url = up.url
        resolve(result)
      },
      onError: (err) => {
        result.error = String(err?.message ?? err)
        resolve(result)
      },
    })
    up.start()
  })
}

const results = await Promise.all(files.map(upload))
process.stdout.write(JSON.stringify(results) + '\n')
