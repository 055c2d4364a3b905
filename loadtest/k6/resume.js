// HEAD resume after an abort: each iteration sends half of an upload,
// aborts the next PATCH (a request timeout of ABORT_TIMEOUT, 1 ms by
// default, drops it while its body is on the way, as a crashed client or
// lost network does), asks HEAD for the offset, which must lie between what
// was acknowledged and what was sent, and resumes from there; a PATCH that
// meets the server still finishing the aborted one (423, 409) waits and
// asks HEAD again. Then DELETE.
//
//   k6 run -e ROUGHY_URL=… -e ROUGHY_KEY=… -e VUS=8 -e ITERATIONS=32 loadtest/k6/resume.js
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { cfg, scriptOptions, begin, patch, head, remove, uploadErrors, bytesAcked } from './lib/tus.js';

const aborts = new Counter('tus_aborts');
const resumes = new Counter('tus_resumes');
const abortTimeout = __ENV.ABORT_TIMEOUT || '1ms';

export const options = scriptOptions('resume');

export default function () {
  const { data, loc } = begin();
  if (!loc) {
    return;
  }
  let off = 0;
  let aborted = false;
  let tries = 0;
  while (off < cfg.size) {
    const n = Math.min(cfg.chunk, cfg.size - off);
    if (!aborted && off >= cfg.size / 2) {
      aborted = true;
      aborts.add(1);
      patch(loc, data, off, n, { timeout: abortTimeout });
      const got = head(loc);
      if (!check(got, { 'HEAD after abort within acknowledged..sent': (h) => h >= off && h <= off + n })) {
        uploadErrors.add(true);
        return;
      }
      resumes.add(1);
      bytesAcked.add(got - off);
      off = got;
      continue;
    }
    const res = patch(loc, data, off, n);
    if (res.status === 204 && Number(res.headers['Upload-Offset']) === off + n) {
      bytesAcked.add(n);
      off += n;
      tries = 0;
      continue;
    }
    // The server may still be finishing the aborted PATCH.
    if ((res.status === 423 || res.status === 409) && tries < 5) {
      tries++;
      sleep(0.2 * tries);
      const got = head(loc);
      if (got >= off) {
        bytesAcked.add(got - off);
        off = got;
        continue;
      }
    }
    check(res, { 'PATCH after resume 204': (r) => r.status === 204 });
    uploadErrors.add(true);
    return;
  }
  check(off, { 'upload complete': (o) => o === cfg.size });
  uploadErrors.add(!remove(loc));
}
