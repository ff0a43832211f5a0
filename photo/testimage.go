package photo

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
)

// GenerateTestImage returns a w×h image encoded as format (FormatJPEG,
// FormatPNG or FormatGIF). The picture is a colour gradient with random
// rectangles, discs and light noise, so it does not compress to nothing and
// scaling it exercises real work. The same arguments give the same bytes.
// It is meant for tests and demos; w×h may not exceed DefaultMaxPixels.
func GenerateTestImage(format string, w, h int, seed int64) ([]byte, error) {
	if w <= 0 || h <= 0 || int64(w)*int64(h) > DefaultMaxPixels {
		return nil, fmt.Errorf("photo: generate test image: size %dx%d: width and height must be positive and their product at most %d", w, h, DefaultMaxPixels)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x70686f746f)) // "photo"
	img := image.NewRGBA(image.Rect(0, 0, w, h))

	// Diagonal gradient.
	for y := range h {
		row := img.Pix[y*img.Stride:]
		for x := range w {
			i := 4 * x
			row[i+0] = uint8(255 * x / w)
			row[i+1] = uint8(255 * y / h)
			row[i+2] = uint8(255 - 255*(x+y)/(w+h))
			row[i+3] = 255
		}
	}

	// Shapes in random colours.
	randColor := func() *image.Uniform {
		return image.NewUniform(color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255})
	}
	for range 4 {
		x0, y0 := rng.IntN(w), rng.IntN(h)
		r := image.Rect(x0, y0, x0+1+rng.IntN(w/2+1), y0+1+rng.IntN(h/2+1))
		draw.Draw(img, r, randColor(), image.Point{}, draw.Src)
	}
	for range 6 {
		c := image.Pt(rng.IntN(w), rng.IntN(h))
		rad := 1 + rng.IntN(min(w, h)/4+1)
		col := randColor().C.(color.RGBA)
		for y := max(0, c.Y-rad); y < min(h, c.Y+rad); y++ {
			for x := max(0, c.X-rad); x < min(w, c.X+rad); x++ {
				if dx, dy := x-c.X, y-c.Y; dx*dx+dy*dy <= rad*rad {
					img.SetRGBA(x, y, col)
				}
			}
		}
	}

	// Light noise.
	for i := 0; i < len(img.Pix); i += 4 {
		n := rng.IntN(17) - 8
		for c := range 3 {
			img.Pix[i+c] = uint8(min(255, max(0, int(img.Pix[i+c])+n)))
		}
	}

	var buf bytes.Buffer
	var err error
	switch format {
	case FormatJPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	case FormatPNG:
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		err = enc.Encode(&buf, img)
	case FormatGIF:
		err = gif.Encode(&buf, toWebSafe(img), nil)
	default:
		return nil, fmt.Errorf("photo: generate test image: %w: format %q; want %q, %q or %q",
			ErrUnsupportedFormat, format, FormatJPEG, FormatPNG, FormatGIF)
	}
	if err != nil {
		return nil, fmt.Errorf("photo: generate test image: %w", err)
	}
	return buf.Bytes(), nil
}

// toWebSafe maps img to the 216-colour web-safe palette by arithmetic. The
// GIF encoder's own quantizer (Floyd-Steinberg over a searched palette) takes
// tens of seconds on a 12-megapixel image; this takes milliseconds, and the
// noise in the picture already acts as dithering.
func toWebSafe(img *image.RGBA) *image.Paletted {
	b := img.Bounds()
	p := image.NewPaletted(b, palette.WebSafe)
	level := func(v uint8) uint8 { return (v + 25) / 51 } // 0..5
	for y := range b.Dy() {
		src := img.Pix[y*img.Stride:]
		dst := p.Pix[y*p.Stride:]
		for x := range b.Dx() {
			i := 4 * x
			dst[x] = level(src[i])*36 + level(src[i+1])*6 + level(src[i+2])
		}
	}
	return p
}
