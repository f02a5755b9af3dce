// AudioWorklet: microphone audio at the context's rate -> 16 kHz mono PCM16, posted in 20 ms
// frames (640 bytes). Averaging over each output sample's input span is a cheap low-pass, good
// enough for speech recognition.
class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.target = (options.processorOptions && options.processorOptions.targetRate) || 16000;
    this.ratio = sampleRate / this.target;
    this.pos = 0; // fractional input position of the next output sample
    this.acc = 0;
    this.n = 0;
    this.frame = new Int16Array(this.target / 50);
    this.fill = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      this.acc += input[i];
      this.n += 1;
      this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        const v = Math.max(-1, Math.min(1, this.acc / this.n));
        this.acc = 0;
        this.n = 0;
        this.frame[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        if (this.fill === this.frame.length) {
          const out = this.frame.slice().buffer;
          this.port.postMessage(out, [out]);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
