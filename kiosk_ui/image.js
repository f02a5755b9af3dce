// Photo questions: decode the picked or captured file, scale it down in a canvas so that a
// 12-megapixel phone photo becomes a few hundred kilobytes before it leaves the device.


export class ImageProblem extends Error {}

/**
 * @param {File} file
 * @param {{maxSide: number, maxBytes: number}} limits
 * @returns {Promise<{dataUrl: string, width: number, height: number}>}
 */
export async function scaleImage(file, limits) {
  // Any image the browser can decode (a phone camera may give HEIC); it leaves as a JPEG.
  if (!file.type.startsWith("image/")) {
    throw new ImageProblem("Please choose a photo.");
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new ImageProblem("That photo could not be opened. Please try another one.");
  }
  const scale = Math.min(1, limits.maxSide / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff"; // transparent PNGs become JPEG on white, not black
  g.fillRect(0, 0, width, height);
  g.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  // Base64 is 4/3 of the bytes; step the quality down until it fits the server's limit.
  for (const quality of [0.85, 0.7, 0.55, 0.4]) {
    const dataUrl = canvas.toDataURL("image/jpeg", quality);
    if ((dataUrl.length - 23) * 0.75 <= limits.maxBytes) return { dataUrl, width, height };
  }
  throw new ImageProblem("That photo is too large to send. Please try a smaller one.");
}
