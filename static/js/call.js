// 1:1 video calls over WebRTC, signalled through the Parley WebSocket
// (call:initiate / call:incoming / call:answer / call:ice-candidate / call:end).

import { get } from './api.js';
import { h, icon, icons, avatar, duration, toast, announce } from './ui.js';

const END_TEXT = {
  timeout: 'No answer',
  rejected: 'Call declined',
  cancelled: 'Call cancelled',
  ended: 'Call ended',
  disconnected: 'Connection lost',
  answered_elsewhere: 'Answered on another device',
  busy: 'Busy — they are in another call',
  failed: 'Call failed',
};

async function iceServers() {
  try {
    const res = await get('/api/calls/ice-servers');
    return Array.isArray(res?.iceServers) ? res.iceServers : [];
  } catch {
    return [];
  }
}

export class CallManager {
  constructor(app) {
    this.app = app;
    this.call = null;
    this.incoming = null; // { data, dialog }
    const s = app.socket;
    s.addEventListener('call:incoming', (e) => this.onIncoming(e.detail));
    s.addEventListener('call:answer', (e) => this.onAnswer(e.detail));
    s.addEventListener('call:ice-candidate', (e) => this.onRemoteCandidate(e.detail));
    s.addEventListener('call:busy', (e) => this.onBusy(e.detail));
    s.addEventListener('call:end', (e) => this.onEnd(e.detail));
  }

  get busy() {
    return !!this.call || !!this.incoming;
  }

  // ---------- outgoing ----------

  async start(chat, peer) {
    if (this.busy) {
      toast('You are already in a call.', 'warn');
      return;
    }
    if (!this.app.socket.isReady) {
      toast('You are offline. Calls need a connection.', 'warn');
      return;
    }
    const callId = crypto.randomUUID();
    const call = this.newCall({ callId, chatId: chat.id, peer, role: 'caller' });
    call.ui.setStatus('Starting camera…');
    try {
      await this.setupMedia(call);
      const servers = await iceServers();
      if (this.call !== call) return;
      this.setupPeer(call, servers);
      const offer = await call.pc.createOffer();
      await call.pc.setLocalDescription(offer);
      call.ui.setStatus('Ringing…');
      await this.app.socket.request('call:initiate', {
        callId, chatId: chat.id, video: true, sdp: call.pc.localDescription.toJSON(),
      });
    } catch (e) {
      if (this.call !== call) return;
      if (e?.code === 'callee_busy' || e?.code === 'busy') return this.finish(call, e.code === 'busy' ? 'You are already in a call' : END_TEXT.busy, 'busy');
      if (e?.name === 'NotAllowedError') return this.finish(call, 'Camera or microphone permission denied', 'failed');
      if (e?.name === 'NotFoundError') return this.finish(call, 'No camera or microphone found', 'failed');
      return this.finish(call, e?.message ? `Call failed: ${e.message}` : END_TEXT.failed, 'failed');
    }
  }

  newCall({ callId, chatId, peer, role }) {
    const call = {
      callId, chatId, peer, role,
      pc: null, local: null, remote: new MediaStream(),
      remoteSet: false, pendingRemote: [], answerSent: role === 'caller', pendingLocal: [],
      startedAt: 0, timer: null, ended: false, muted: false, cameraOff: false,
    };
    call.ui = this.renderScreen(call);
    this.call = call;
    return call;
  }

  async setupMedia(call) {
    call.local = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' },
    });
    if (call.ended) {
      call.local.getTracks().forEach((t) => t.stop());
      throw new Error('ended');
    }
    call.ui.localVideo.srcObject = call.local;
  }

  setupPeer(call, servers) {
    const pc = new RTCPeerConnection({ iceServers: servers });
    call.pc = pc;
    for (const track of call.local.getTracks()) pc.addTrack(track, call.local);
    pc.onicecandidate = (e) => {
      if (!e.candidate || call.ended) return;
      const candidate = e.candidate.toJSON();
      if (!call.answerSent) call.pendingLocal.push(candidate);
      else this.app.socket.send('call:ice-candidate', { callId: call.callId, candidate });
    };
    pc.ontrack = (e) => {
      const stream = e.streams[0];
      if (stream) call.ui.remoteVideo.srcObject = stream;
      else {
        call.remote.addTrack(e.track);
        call.ui.remoteVideo.srcObject = call.remote;
      }
      call.ui.remoteVideo.play?.().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (call.ended) return;
      const st = pc.connectionState;
      if (st === 'connected') this.connected(call);
      else if (st === 'failed') {
        this.app.socket.send('call:end', { callId: call.callId });
        this.finish(call, 'Connection failed', 'failed');
      } else if (st === 'disconnected') call.ui.setStatus('Reconnecting…');
    };
  }

  connected(call) {
    call.screen?.classList.add('is-connected');
    if (!call.startedAt) {
      call.startedAt = Date.now();
      announce(`Call with ${call.peer.username} connected`);
      call.timer = setInterval(() => call.ui.setStatus(duration(Date.now() - call.startedAt)), 500);
    }
    call.ui.setStatus(duration(Date.now() - call.startedAt));
  }

  // ---------- incoming ----------

  /**
   * A notification's "Answer" or "Decline" (the service worker opened
   * `/chat/:id?call=ID&action=…`): declines at once when connected, or answers the
   * call when its `call:incoming` is here or arrives soon; a call that has stopped
   * ringing is said to be over.
   */
  takeAction(callId, action) {
    if (!callId || (action !== 'answer' && action !== 'decline')) return;
    if (this.incoming?.data.callId === callId) {
      if (action === 'answer') this.accept();
      else this.reject();
      return;
    }
    if (this.call?.callId === callId) return;
    clearTimeout(this.pendingTimer);
    this.pendingAction = { callId, action };
    const done = () => {
      off();
      clearTimeout(this.pendingTimer);
    };
    const onReady = () => {
      if (this.pendingAction?.callId !== callId) return done();
      if (action === 'decline') {
        this.app.socket.send('call:reject', { callId });
        this.pendingAction = null;
        toast('Call declined.');
        done();
      }
    };
    const off = this.app.on('connection', (state) => {
      if (state === 'ready') onReady();
    });
    if (this.app.socket.isReady) onReady();
    // an answer waits for the ringing call to come (or not) after the connect
    this.pendingTimer = setTimeout(() => {
      off();
      if (this.pendingAction?.callId !== callId) return;
      this.pendingAction = null;
      if (action === 'answer') toast('That call is no longer ringing.', 'warn');
    }, 15000);
  }

  onIncoming(data) {
    const pending = this.pendingAction?.callId === data.callId ? this.pendingAction : null;
    if (pending) this.pendingAction = null;
    if (pending?.action === 'decline') {
      this.app.socket.send('call:reject', { callId: data.callId });
      return;
    }
    if (this.busy) {
      // Another device of ours may take it; this one stays quiet but says no if asked.
      if (this.call?.callId !== data.callId) this.app.socket.send('call:reject', { callId: data.callId });
      return;
    }
    const chat = this.app.chats.get(data.chatId);
    const peer = this.app.user(data.from) || chat?.members?.find((m) => m.id === data.from) || { id: data.from, username: 'Someone' };
    const accept = h('button', { type: 'button', class: 'round-btn accept', 'aria-label': 'Accept video call', html: icons.video });
    const reject = h('button', { type: 'button', class: 'round-btn hangup', 'aria-label': 'Decline call', html: icons.phoneOff });
    const dialog = h('dialog', { class: 'incoming-call', 'aria-labelledby': 'incoming-title' },
      h('div', { class: 'incoming-body' },
        h('div', { class: 'ring-pulse' }, avatar(peer.username, peer.id, { size: 'xl' })),
        h('h2', { id: 'incoming-title' }, peer.username),
        h('p', { class: 'muted' }, data.video === false ? 'Incoming voice call…' : 'Incoming video call…'),
        h('div', { class: 'incoming-actions' },
          h('div', { class: 'labeled-btn' }, reject, h('span', {}, 'Decline')),
          h('div', { class: 'labeled-btn' }, accept, h('span', {}, 'Accept')))));
    document.body.append(dialog);
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      this.reject();
    });
    accept.addEventListener('click', () => this.accept());
    reject.addEventListener('click', () => this.reject());
    this.incoming = { data, dialog, peer, chat };
    dialog.showModal();
    accept.focus();
    announce(`Incoming video call from ${peer.username}`);
    this.app.notify?.(`${peer.username} is calling`, 'Incoming video call');
    if (pending?.action === 'answer') this.accept();
  }

  closeIncoming() {
    if (!this.incoming) return;
    this.incoming.dialog.close();
    this.incoming.dialog.remove();
    this.incoming = null;
  }

  reject() {
    if (!this.incoming) return;
    this.app.socket.send('call:reject', { callId: this.incoming.data.callId });
    this.closeIncoming();
  }

  async accept() {
    const inc = this.incoming;
    if (!inc) return;
    this.closeIncoming();
    const { data, peer } = inc;
    const call = this.newCall({ callId: data.callId, chatId: data.chatId, peer, role: 'callee' });
    call.pendingRemote.push(...(inc.early || []));
    call.ui.setStatus('Connecting…');
    try {
      await this.setupMedia(call);
      const servers = await iceServers();
      if (this.call !== call) return;
      this.setupPeer(call, servers);
      await call.pc.setRemoteDescription(data.sdp);
      call.remoteSet = true;
      await this.flushRemote(call);
      const answer = await call.pc.createAnswer();
      await call.pc.setLocalDescription(answer);
      await this.app.socket.request('call:answer', { callId: call.callId, sdp: call.pc.localDescription.toJSON() });
      call.answerSent = true;
      for (const c of call.pendingLocal.splice(0)) this.app.socket.send('call:ice-candidate', { callId: call.callId, candidate: c });
    } catch (e) {
      if (this.call !== call || call.ended) return;
      this.app.socket.send('call:end', { callId: call.callId });
      const msg = e?.name === 'NotAllowedError' ? 'Camera or microphone permission denied' : e?.code === 'not_found' ? 'The call has ended' : `Call failed${e?.message ? `: ${e.message}` : ''}`;
      this.finish(call, msg, 'failed');
    }
  }

  // ---------- signalling ----------

  async onAnswer({ callId, sdp }) {
    const call = this.call;
    if (!call || call.callId !== callId || call.role !== 'caller' || !call.pc) return;
    call.ui.setStatus('Connecting…');
    try {
      await call.pc.setRemoteDescription(sdp);
      call.remoteSet = true;
      await this.flushRemote(call);
    } catch (e) {
      this.app.socket.send('call:end', { callId });
      this.finish(call, `Call failed: ${e.message}`, 'failed');
    }
  }

  async onRemoteCandidate({ callId, candidate }) {
    const call = this.call;
    if (!call || call.callId !== callId) {
      // May arrive while the incoming dialog is still open: keep it for later.
      if (this.incoming?.data.callId === callId) (this.incoming.early ||= []).push(candidate);
      return;
    }
    if (!call.remoteSet || !call.pc) {
      call.pendingRemote.push(candidate);
      return;
    }
    try {
      await call.pc.addIceCandidate(candidate);
    } catch {
      /* a candidate that does not apply; ICE carries on */
    }
  }

  async flushRemote(call) {
    for (const c of call.pendingRemote.splice(0)) {
      try {
        await call.pc.addIceCandidate(c);
      } catch {
        /* ignore */
      }
    }
  }

  onBusy({ callId }) {
    const call = this.call;
    if (call && call.callId === callId) this.finish(call, END_TEXT.busy, 'busy');
  }

  onEnd({ callId, reason }) {
    if (this.incoming?.data.callId === callId) {
      const who = this.incoming.peer.username;
      this.closeIncoming();
      if (reason === 'timeout' || reason === 'cancelled') toast(`Missed video call from ${who}`);
      else if (reason === 'answered_elsewhere') toast('Call answered on another device');
      return;
    }
    const call = this.call;
    if (!call || call.callId !== callId) return;
    this.finish(call, END_TEXT[reason] || END_TEXT.ended, reason);
  }

  hangup() {
    const call = this.call;
    if (!call) return;
    this.app.socket.send('call:end', { callId: call.callId });
    this.finish(call, call.startedAt ? END_TEXT.ended : END_TEXT.cancelled, 'ended', 900);
  }

  /** Tears the call down, shows why for a moment, then removes the screen. */
  finish(call, text, reason, linger = 2200) {
    if (call.ended) return;
    call.ended = true;
    clearInterval(call.timer);
    try {
      call.pc?.close();
    } catch {
      /* ignore */
    }
    call.local?.getTracks().forEach((t) => t.stop());
    const spent = call.startedAt ? ` · ${duration(Date.now() - call.startedAt)}` : '';
    call.ui.setStatus(text + spent);
    call.screen.classList.add('is-ended');
    call.screen.dataset.endReason = reason;
    announce(text);
    for (const b of call.screen.querySelectorAll('.call-controls button')) b.disabled = true;
    setTimeout(() => {
      call.screen.remove();
      if (this.call === call) this.call = null;
      call.returnFocus?.focus?.();
    }, linger);
  }

  // ---------- UI ----------

  renderScreen(call) {
    const remoteVideo = h('video', { class: 'remote-video', autoplay: true, playsinline: true, 'aria-label': `${call.peer.username}'s video` });
    const localVideo = h('video', { class: 'local-video', autoplay: true, playsinline: true, muted: true, 'aria-label': 'Your camera' });
    localVideo.muted = true;
    const status = h('p', { class: 'call-status', role: 'status', 'aria-live': 'polite' }, '');
    const mute = h('button', { type: 'button', class: 'round-btn ghost', 'aria-pressed': 'false', 'aria-label': 'Mute microphone', html: icons.mic });
    const cam = h('button', { type: 'button', class: 'round-btn ghost', 'aria-pressed': 'false', 'aria-label': 'Turn camera off', html: icons.video });
    const hang = h('button', { type: 'button', class: 'round-btn hangup', 'aria-label': 'Hang up', html: icons.phoneOff });
    const screen = h('section', { class: 'call-screen', role: 'dialog', 'aria-modal': 'true', 'aria-label': `Video call with ${call.peer.username}` },
      h('div', { class: 'call-stage' },
        remoteVideo,
        h('div', { class: 'call-placeholder' }, avatar(call.peer.username, call.peer.id, { size: 'xl' })),
        localVideo),
      h('header', { class: 'call-head' },
        h('h2', {}, call.peer.username),
        status),
      h('div', { class: 'call-controls' },
        h('div', { class: 'labeled-btn' }, mute, h('span', {}, 'Mute')),
        h('div', { class: 'labeled-btn' }, cam, h('span', {}, 'Camera')),
        h('div', { class: 'labeled-btn' }, hang, h('span', {}, 'End'))));
    mute.addEventListener('click', () => {
      call.muted = !call.muted;
      call.local?.getAudioTracks().forEach((t) => (t.enabled = !call.muted));
      mute.setAttribute('aria-pressed', String(call.muted));
      mute.setAttribute('aria-label', call.muted ? 'Unmute microphone' : 'Mute microphone');
      mute.innerHTML = call.muted ? icons.micOff : icons.mic;
    });
    cam.addEventListener('click', () => {
      call.cameraOff = !call.cameraOff;
      call.local?.getVideoTracks().forEach((t) => (t.enabled = !call.cameraOff));
      cam.setAttribute('aria-pressed', String(call.cameraOff));
      cam.setAttribute('aria-label', call.cameraOff ? 'Turn camera on' : 'Turn camera off');
      cam.innerHTML = call.cameraOff ? icons.videoOff : icons.video;
      screen.classList.toggle('camera-off', call.cameraOff);
    });
    hang.addEventListener('click', () => this.hangup());
    screen.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.hangup();
      if (e.key === 'Tab') {
        // keep focus inside the call screen
        const f = [...screen.querySelectorAll('button:not([disabled])')];
        if (!f.length) return;
        const i = f.indexOf(document.activeElement);
        if (e.shiftKey && i <= 0) {
          e.preventDefault();
          f[f.length - 1].focus();
        } else if (!e.shiftKey && i === f.length - 1) {
          e.preventDefault();
          f[0].focus();
        }
      }
    });
    call.returnFocus = document.activeElement;
    call.screen = screen;
    document.body.append(screen);
    hang.focus();
    return {
      remoteVideo, localVideo,
      setStatus: (t) => {
        status.textContent = t;
      },
    };
  }
}

export { icon };
