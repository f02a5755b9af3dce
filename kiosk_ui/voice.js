// Voice in the browser: the microphone as 16 kHz PCM16 frames (AudioWorklet) and the reply's
// PCM16 audio played with Web Audio, stoppable at once (barge-in, cancel, start over).

export class Mic {
  constructor() {
    this.stream = null;
    this.ctx = null;
    this.node = null;
  }

  get active() { return this.stream !== null; }

  /** @param {(frame: ArrayBuffer) => void} onFrame */
  async start(onFrame) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule("/ui/pcm-worklet.js");
    const src = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "pcm16-downsampler", { processorOptions: { targetRate: 16000 } });
    this.node.port.onmessage = (ev) => onFrame(ev.data);
    src.connect(this.node);
  }

  stop() {
    if (this.node) this.node.port.onmessage = null;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close().catch(() => {});
    this.stream = this.ctx = this.node = null;
  }
}

export class Player {
  constructor() {
    this.ctx = null;
    this.rate = 22050;
    this.turn = null;
    this.next = 0;
    this.sources = new Set();
  }

  begin(turn, rate) {
    this.stop();
    this.ctx = this.ctx || new AudioContext();
    this.ctx.resume().catch(() => {});
    this.turn = turn;
    this.rate = rate;
    this.next = this.ctx.currentTime + 0.05;
  }

  /** One binary frame of PCM16 mono at the announced rate. */
  push(buf) {
    if (!this.ctx || this.turn === null) return;
    const pcm = new Int16Array(buf.byteLength >> 1);
    new Uint8Array(pcm.buffer).set(new Uint8Array(buf, 0, pcm.length * 2));
    if (!pcm.length) return;
    const audio = this.ctx.createBuffer(1, pcm.length, this.rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = audio;
    src.connect(this.ctx.destination);
    const at = Math.max(this.next, this.ctx.currentTime);
    src.start(at);
    this.next = at + audio.duration;
    this.sources.add(src);
    src.onended = () => this.sources.delete(src);
  }

  end(turn) {
    if (turn === this.turn) this.turn = null;
  }

  stop() {
    for (const s of this.sources) { try { s.stop(); } catch { /* already ended */ } }
    this.sources.clear();
    this.turn = null;
  }
}
