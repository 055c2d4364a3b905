// Creation, chunked PATCHes and DELETE: each iteration uploads one
// UPLOAD_SIZE upload in CHUNK_SIZE PATCHes and deletes it.
//
//   k6 run -e ROUGHY_URL=http://127.0.0.1:8080 -e ROUGHY_KEY=rk_live_… \
//     -e VUS=16 -e ITERATIONS=64 -e UPLOAD_SIZE=32MiB -e CHUNK_SIZE=8MiB \
//     -e P95_PATCH_MS=1500 -e MAX_ERROR_RATE=0.01 loadtest/k6/upload.js
import { check } from 'k6';
import { cfg, scriptOptions, begin, patch, remove, uploadErrors, bytesAcked } from './lib/tus.js';

export const options = scriptOptions('uploads');

export default function () {
  const { data, loc } = begin();
  if (!loc) {
    return;
  }
  let off = 0;
  while (off < cfg.size) {
    const n = Math.min(cfg.chunk, cfg.size - off);
    const res = patch(loc, data, off, n);
    const ok = check(res, {
      'PATCH 204': (r) => r.status === 204,
      'PATCH Upload-Offset': (r) => Number(r.headers['Upload-Offset']) === off + n,
    });
    if (!ok) {
      uploadErrors.add(true);
      return;
    }
    bytesAcked.add(n);
    off += n;
  }
  uploadErrors.add(!remove(loc));
}
