// Voice messages: a recorder (MediaRecorder + an AnalyserNode for the level meter)
// and a player that fetches the audio with the bearer token and plays a blob: URL.

import { api } from './api.js';
import { h, icon, icons, duration } from './ui.js';

const PREFERRED_TYPES = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm', 'audio/mp4', 'audio/mpeg'];

export function recordingSupported() {
  return !!(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
}

export class Recorder {
  constructor() {
    this.chunks = [];
    this.startedAt = 0;
    this.stream = null;
    this.recorder = null;
    this.ctx = null;
    this.analyser = null;
    this.samples = null;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    const mimeType = PREFERRED_TYPES.find((t) => MediaRecorder.isTypeSupported?.(t)) || '';
    this.recorder = new MediaRecorder(this.stream, mimeType ? { mimeType, audioBitsPerSecond: 48000 } : undefined);
    this.recorder.ondataavailable = (e) => {
      if (e.data && e.data.size) this.chunks.push(e.data);
    };
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this.ctx = new Ctx();
      const source = this.ctx.createMediaStreamSource(this.stream);
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 512;
      source.connect(this.analyser);
      this.samples = new Uint8Array(this.analyser.fftSize);
    } catch {
      this.analyser = null; // the meter is a nicety
    }
    this.recorder.start(250);
    this.startedAt = performance.now();
  }

  /** Input level 0..1 (RMS of the time-domain signal, boosted for display). */
  level() {
    if (!this.analyser) return 0;
    this.analyser.getByteTimeDomainData(this.samples);
    let sum = 0;
    for (const v of this.samples) {
      const x = (v - 128) / 128;
      sum += x * x;
    }
    return Math.min(1, Math.sqrt(sum / this.samples.length) * 4);
  }

  elapsedMs() {
    return this.startedAt ? performance.now() - this.startedAt : 0;
  }

  /** Stops and resolves with `{blob, durationMs, mime}`. */
  stop() {
    const durationMs = Math.round(this.elapsedMs());
    return new Promise((resolve) => {
      const rec = this.recorder;
      const finish = () => {
        const type = (rec?.mimeType || this.chunks[0]?.type || 'audio/webm').split(';')[0];
        const blob = new Blob(this.chunks, { type });
        this.release();
        resolve({ blob, durationMs, mime: type });
      };
      if (!rec || rec.state === 'inactive') return finish();
      rec.addEventListener('stop', finish, { once: true });
      try {
        rec.requestData?.();
      } catch {
        /* ignore */
      }
      rec.stop();
    });
  }

  cancel() {
    try {
      if (this.recorder && this.recorder.state !== 'inactive') this.recorder.stop();
    } catch {
      /* ignore */
    }
    this.chunks = [];
    this.release();
  }

  release() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.ctx?.close().catch(() => {});
    this.stream = null;
    this.ctx = null;
    this.analyser = null;
  }
}

// ---------- playback ----------

const blobUrls = new Map(); // url -> Promise<string>
const knownDurations = new Map(); // audioId -> ms (from our own recordings)

export function rememberDuration(audioId, ms) {
  if (audioId && ms > 0) knownDurations.set(String(audioId), ms);
}

function fetchBlobUrl(url) {
  if (!blobUrls.has(url)) {
    const p = api('GET', url, undefined, { raw: true })
      .then((res) => res.blob())
      .then((blob) => URL.createObjectURL(blob));
    p.catch(() => blobUrls.delete(url));
    blobUrls.set(url, p);
  }
  return blobUrls.get(url);
}

let playing = null; // only one voice message plays at a time

/** A voice-message player for `audio` (`{audioId, url, mime, bytes, durationMs}`). */
export function audioPlayer(audio) {
  const el = h('div', { class: 'voice', dataset: { audioId: audio.audioId ?? '' } });
  const media = new Audio();
  media.preload = 'metadata';
  const btn = h('button', { type: 'button', class: 'voice-play', 'aria-label': 'Play voice message', html: icons.play });
  const bar = h('div', { class: 'voice-bar' }, h('div', { class: 'voice-progress' }));
  const seek = h('input', {
    type: 'range', class: 'voice-seek', min: '0', max: '1000', value: '0', step: '1', 'aria-label': 'Position in voice message',
  });
  const time = h('span', { class: 'voice-time' }, '0:00');
  el.append(btn, h('div', { class: 'voice-track' }, bar, seek), time);

  let known = Number(audio.durationMs) || knownDurations.get(String(audio.audioId)) || 0;
  const durMs = () => {
    const d = media.duration;
    if (Number.isFinite(d) && d > 0) return d * 1000;
    return known;
  };
  const render = () => {
    const total = durMs();
    const pos = media.currentTime * 1000;
    const frac = total > 0 ? Math.min(1, pos / total) : 0;
    bar.firstChild.style.setProperty('width', `${(frac * 100).toFixed(2)}%`);
    if (document.activeElement !== seek) seek.value = String(Math.round(frac * 1000));
    time.textContent = !media.paused || pos > 0 ? duration(pos) : duration(total);
    el.dataset.durationMs = String(Math.round(total));
    el.classList.toggle('is-playing', !media.paused);
    btn.innerHTML = media.paused ? icons.play : icons.pause;
    btn.setAttribute('aria-label', media.paused ? 'Play voice message' : 'Pause voice message');
  };

  let loaded = null;
  const load = () => {
    if (!loaded) {
      el.classList.add('is-loading');
      const url = audio.url || `/api/media/audio/${audio.audioId}`;
      // our own pending recording is already a blob: URL (CSP: media-src blob:, no fetch)
      loaded = (url.startsWith('blob:') ? Promise.resolve(url) : fetchBlobUrl(url))
        .then(async (src) => {
          media.src = src;
          await new Promise((resolve) => {
            if (media.readyState >= 1) return resolve();
            media.addEventListener('loadedmetadata', resolve, { once: true });
            media.addEventListener('error', resolve, { once: true });
          });
          // MediaRecorder webm has no duration in its header: Chrome reports Infinity
          // until it has seen the end. Seeking far ahead makes it compute the real one.
          if (!Number.isFinite(media.duration)) {
            await new Promise((resolve) => {
              const done = () => {
                media.removeEventListener('durationchange', check);
                clearTimeout(timer);
                resolve();
              };
              const check = () => {
                if (Number.isFinite(media.duration)) done();
              };
              const timer = setTimeout(done, 3000);
              media.addEventListener('durationchange', check);
              try {
                media.currentTime = 1e7;
              } catch {
                done();
              }
            });
            media.currentTime = 0;
          }
          if (!known && Number.isFinite(media.duration)) known = media.duration * 1000;
          el.classList.remove('is-loading');
          el.classList.add('is-ready');
          render();
        })
        .catch(() => {
          el.classList.remove('is-loading');
          el.classList.add('is-error');
          time.textContent = 'unavailable';
          loaded = null;
        });
    }
    return loaded;
  };

  btn.addEventListener('click', async () => {
    await load();
    if (media.paused) {
      if (playing && playing !== media) playing.pause();
      playing = media;
      try {
        await media.play();
      } catch {
        /* autoplay policy or decode error */
      }
    } else media.pause();
    render();
  });
  seek.addEventListener('input', async () => {
    await load();
    const total = durMs();
    if (total > 0) media.currentTime = (Number(seek.value) / 1000) * (total / 1000);
    render();
  });
  for (const ev of ['timeupdate', 'play', 'pause', 'durationchange', 'loadedmetadata']) media.addEventListener(ev, render);
  media.addEventListener('ended', () => {
    media.currentTime = 0;
    render();
  });
  el.media = media;
  el.load = load;
  render();
  // Fetch soon so the duration is right even before the first play.
  setTimeout(load, 50);
  return el;
}

export { icon };
