#!/usr/bin/env node
// A WHEP viewer in Debian's headless Chromium that records what each rendered frame was and when
// it was shown, for the timing of GOP catch-up, resolution changes and IPv6 candidates.
//
//   node tests/interop/chromium_whep.mjs WHEP_URL SECONDS [--family 4|6] [--until-closed]
//        [--join-at N --gop G]
//
// Opens a page of the server (WHEP_URL's origin, /healthz) so that the POST is same-origin, and
// runs its own WHEP client there: a receive-only offer (video and audio, max-bundle), complete
// (no trickle; with --family only the 127.0.0.1 or the ::1 host candidates are kept: the machine's
// other addresses would be preferred and are not what a loopback test means), POST, answer. Every
// rendered frame is recorded with requestVideoFrameCallback (its RTP timestamp, when its last
// packet arrived, when it is shown, its size), and getStats() every 250 ms. With --join-at N --gop G
// the POST waits until the stream (a video-only one whose GOP is G frames) is N frames into its
// GOP, read from the stream's frames_in in the API (`joinedAtFrame`: where it was). At the end (SECONDS,
// or with --until-closed when the connection or its DTLS transport ends, at most SECONDS) it DELETEs the session and
// prints ONE line of JSON (times in ms from the POST):
//   {"status", "error", "answer", "states": [[t, connectionState or "dtls-" + the DTLS transport's
//    state]], "connectedMs", "firstFrameMs",
//    "frames": [{"t", "rtp", "recv", "display", "w", "h"}] (rtp unwrapped, 90 kHz),
//    "liveOffsetMs" (median recv - rtp/90 of frames received 3 s or more after the first: where a
//    live frame's timestamp lands on the page's clock), "latencies" ([t, display - (rtp/90 +
//    liveOffsetMs)] per frame: how far behind the live edge each frame was shown),
//    "stats" (last video inbound-rtp: framesDecoded, framesDropped, framesReceived,
//    jitterBufferDelay, jitterBufferEmittedCount, jitterBufferTargetDelay, totalFreezesDuration,
//    freezeCount, totalPausesDuration, packetsLost, nackCount, pliCount, keyFramesDecoded,
//    frameWidth, frameHeight), "statsTimeline" ([t, framesDecoded, jitterBufferDelay,
//    jitterBufferEmittedCount, totalFreezesDuration] every 250 ms), "pair" (the selected
//    candidate pair's local and remote address), "consoleErrors"}
// Exit codes as tests/browser/chromium.mjs (0: the page was read, whatever it showed).
import { runPage } from '../browser/chromium.mjs';

const whep = process.argv[2];
const options = process.argv.slice(4);
const option = (name) => {
  const i = options.indexOf(name);
  return i >= 0 ? options[i + 1] ?? true : null;
};
// runPage opens argv[2]: make it the server's own page, keep the WHEP URL for the session.
process.argv[2] = new URL('/healthz', whep).href;

// Runs in the page.
async function view({ whep, seconds, family, untilClosed, joinAt, gop }) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = { status: null, error: null, states: [], frames: [], statsTimeline: [] };
  let t0 = performance.now();
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addEventListener('connectionstatechange', () =>
    out.states.push([performance.now() - t0, pc.connectionState]));
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  document.body.appendChild(video);
  const remote = new MediaStream();
  pc.addEventListener('track', (e) => {
    remote.addTrack(e.track);
    video.srcObject = remote;
    video.play().catch(() => {});
  });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, 3000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  let sdp = pc.localDescription.sdp;
  if (family) {
    const keep = family === '6' ? '::1' : '127.0.0.1';
    sdp = sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') ||
      l.split(' ')[4] === keep).join('\r\n');
  }
  if (joinAt !== null) {
    const info = whep.replace('/whep/', '/api/v1/streams/');
    for (let i = 0; i < 2000; i++) {
      const s = await (await fetch(info)).json().catch(() => ({}));
      const at = (s.frames_in ?? -1) % gop;
      if (at >= joinAt && at < joinAt + 3) { out.joinedAtFrame = at; break; }
      await sleep(10);
    }
  }
  t0 = performance.now();
  const res = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: sdp });
  out.status = res.status;
  // Where the POST landed: a full node redirects (307) to another.
  out.url = res.url;
  out.redirected = res.redirected;
  const body = await res.text();
  if (res.status !== 201) {
    out.error = body;
    pc.close();
    return out;
  }
  out.answer = body;
  const session = new URL(res.headers.get('Location'), res.url || whep).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  // The DTLS transport says when the server closes the session (close_notify): the connection
  // state only follows once ICE consent fails.
  const dtls = pc.getReceivers()[0] && pc.getReceivers()[0].transport;
  if (dtls) {
    dtls.addEventListener('statechange', () => out.states.push([performance.now() - t0, 'dtls-' + dtls.state]));
  }

  let done = false;
  let lastRtp = null;
  let unwrapped = 0;
  const onFrame = (now, m) => {
    if (done) return;
    if (typeof m.rtpTimestamp === 'number') {
      // RTP timestamps wrap at 2^32.
      if (lastRtp === null) unwrapped = m.rtpTimestamp;
      else unwrapped += ((m.rtpTimestamp - lastRtp + 2 ** 31) % 2 ** 32 + 2 ** 32) % 2 ** 32 - 2 ** 31;
      lastRtp = m.rtpTimestamp;
    }
    out.frames.push({
      t: now - t0,
      rtp: lastRtp === null ? null : unwrapped,
      recv: typeof m.receiveTime === 'number' ? m.receiveTime - t0 : null,
      display: m.expectedDisplayTime - t0,
      w: m.width,
      h: m.height,
    });
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);

  const readStats = async () => {
    const report = await pc.getStats();
    let video = null;
    let pair = null;
    report.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') video = r;
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    });
    if (pair) {
      const address = (id) => { const c = report.get(id); return c ? `${c.address}:${c.port}` : null; };
      out.pair = { local: address(pair.localCandidateId), remote: address(pair.remoteCandidateId) };
    }
    if (video) {
      const keys = ['framesDecoded', 'framesDropped', 'framesReceived', 'jitterBufferDelay',
        'jitterBufferEmittedCount', 'jitterBufferTargetDelay', 'totalFreezesDuration', 'freezeCount',
        'totalPausesDuration', 'packetsLost', 'nackCount', 'pliCount', 'keyFramesDecoded',
        'frameWidth', 'frameHeight'];
      out.stats = Object.fromEntries(keys.map((k) => [k, video[k] ?? null]));
      out.statsTimeline.push([performance.now() - t0, video.framesDecoded, video.jitterBufferDelay,
        video.jitterBufferEmittedCount, video.totalFreezesDuration]);
    }
  };
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await sleep(250);
    try { await readStats(); } catch (_) {}
    if (untilClosed && (['closed', 'failed'].includes(pc.connectionState) ||
        (dtls && ['closed', 'failed'].includes(dtls.state)))) break;
  }
  done = true;
  await fetch(session, { method: 'DELETE' }).catch(() => {});
  pc.close();
  return out;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
}

await runPage('chromium_whep.mjs', async (page, seconds) => {
  const out = await page.evaluate(view, {
    whep, seconds, family: option('--family'), untilClosed: option('--until-closed') !== null,
    joinAt: option('--join-at') === null ? null : Number(option('--join-at')),
    gop: Number(option('--gop') ?? 0),
  });
  out.connectedMs = (out.states.find(([, s]) => s === 'connected') || [null])[0];
  const first = out.frames[0];
  out.firstFrameMs = first ? first.t : null;
  const timed = out.frames.filter((f) => f.rtp !== null && f.recv !== null);
  const live = timed.filter((f) => f.recv >= first.recv + 3000);
  out.liveOffsetMs = median(live.map((f) => f.recv - f.rtp / 90));
  out.latencies = out.liveOffsetMs === null ? []
    : timed.map((f) => [Math.round(f.t), Math.round(f.display - (f.rtp / 90 + out.liveOffsetMs))]);
  return out;
});
