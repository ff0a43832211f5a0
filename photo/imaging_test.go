package photo_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"strings"
	"testing"

	"github.com/shared-infra/eventbus/photo"
)

func generate(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	b, err := photo.GenerateTestImage(format, w, h, 1)
	if err != nil {
		t.Fatalf("GenerateTestImage(%s, %d, %d): %v", format, w, h, err)
	}
	return b
}

func TestInspectFormats(t *testing.T) {
	tests := []struct {
		format string
		w, h   int
	}{
		{photo.FormatJPEG, 640, 480},
		{photo.FormatJPEG, 33, 517},
		{photo.FormatPNG, 300, 200},
		{photo.FormatPNG, 1, 1},
		{photo.FormatGIF, 120, 90},
	}
	for _, tt := range tests {
		data := generate(t, tt.format, tt.w, tt.h)
		info, img, err := photo.Inspect(bytes.NewReader(data), photo.ImagingConfig{})
		if err != nil {
			t.Errorf("Inspect(%s %dx%d): %v", tt.format, tt.w, tt.h, err)
			continue
		}
		want := photo.Info{Width: tt.w, Height: tt.h, Format: tt.format}
		if info != want {
			t.Errorf("Inspect info = %+v, want %+v", info, want)
		}
		if b := img.Bounds(); b.Dx() != tt.w || b.Dy() != tt.h {
			t.Errorf("%s: decoded image is %v, want %dx%d", tt.format, b, tt.w, tt.h)
		}
	}
}

func TestInspectExactlyMaxBytes(t *testing.T) {
	data := generate(t, photo.FormatPNG, 50, 50)
	cfg := photo.ImagingConfig{MaxBytes: int64(len(data)), MaxPixels: 2500}
	if _, _, err := photo.Inspect(bytes.NewReader(data), cfg); err != nil {
		t.Fatalf("file of exactly MaxBytes and MaxPixels rejected: %v", err)
	}
}

// pngHeader returns a PNG signature and IHDR chunk declaring w×h pixels and
// nothing else: decoding it fully would fail.
func pngHeader(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth
	ihdr[9] = 2 // RGB
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.WriteString("IHDR")
	b.Write(ihdr[:])
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte("IHDR"), ihdr[:]...)))
	return b.Bytes()
}

func TestInspectErrors(t *testing.T) {
	jpg := generate(t, photo.FormatJPEG, 200, 100)
	pngData := generate(t, photo.FormatPNG, 200, 100)
	gifData := generate(t, photo.FormatGIF, 200, 100)
	bmp := append([]byte("BM\x36\x00\x01\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00"), make([]byte, 40)...)

	tests := []struct {
		name     string
		data     []byte
		cfg      photo.ImagingConfig
		want     error
		wantMsg  string
		wantCode string
	}{
		{"text file", []byte("hello, I am a text file named cat.jpg\n"), photo.ImagingConfig{},
			photo.ErrUnsupportedFormat, "unsupported format: the file is not a JPEG, PNG or GIF image", photo.CodeUnsupportedFormat},
		{"BMP", bmp, photo.ImagingConfig{},
			photo.ErrUnsupportedFormat, "unsupported format: the file is a BMP image; only JPEG, PNG and GIF are supported", photo.CodeUnsupportedFormat},
		{"WebP", []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"), photo.ImagingConfig{},
			photo.ErrUnsupportedFormat, "the file is a WebP image", photo.CodeUnsupportedFormat},
		{"HEIC", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), photo.ImagingConfig{},
			photo.ErrUnsupportedFormat, "the file is a HEIC image", photo.CodeUnsupportedFormat},
		{"empty", nil, photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the file is empty", photo.CodeCorrupt},
		{"truncated JPEG", jpg[:len(jpg)/2], photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the JPEG data is truncated or damaged", photo.CodeCorrupt},
		{"JPEG marker then garbage", append([]byte{0xff, 0xd8, 0xff}, bytes.Repeat([]byte("garbage!"), 64)...), photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the JPEG data is truncated or damaged", photo.CodeCorrupt},
		{"JPEG header only", jpg[:2], photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the JPEG data", photo.CodeCorrupt},
		{"truncated PNG", pngData[:len(pngData)/2], photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the PNG data is truncated or damaged", photo.CodeCorrupt},
		{"PNG with bad checksum", flipByte(pngHeader(10, 10), 30), photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the PNG data", photo.CodeCorrupt},
		{"truncated GIF", gifData[:len(gifData)/2], photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image: the GIF data is truncated or damaged", photo.CodeCorrupt},
		// The header alone claims 10^10 pixels; there is no pixel data, so
		// ErrTooLarge (not ErrCorrupt) proves the check ran before decoding.
		{"PNG header claiming huge size", pngHeader(100000, 100000), photo.ImagingConfig{},
			photo.ErrTooLarge, "too large: 100000x100000 pixels exceeds the 50000000-pixel limit", photo.CodeTooLarge},
		{"PNG header with zero width", pngHeader(0, 10), photo.ImagingConfig{},
			photo.ErrCorrupt, "corrupt image", photo.CodeCorrupt},
		{"over MaxPixels", jpg, photo.ImagingConfig{MaxPixels: 19999},
			photo.ErrTooLarge, "too large: 200x100 pixels exceeds the 19999-pixel limit", photo.CodeTooLarge},
		{"over MaxBytes", pngData, photo.ImagingConfig{MaxBytes: int64(len(pngData)) - 1},
			photo.ErrTooLarge, "too large: the file is larger than the", photo.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, img, err := photo.Inspect(bytes.NewReader(tt.data), tt.cfg)
			t.Logf("message: %v", err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", err, tt.wantMsg)
			}
			if got := photo.FailureCode(err); got != tt.wantCode {
				t.Errorf("FailureCode = %q, want %q", got, tt.wantCode)
			}
			if img != nil || info != (photo.Info{}) {
				t.Errorf("got image %v, info %+v along with an error", img != nil, info)
			}
		})
	}
}

func flipByte(b []byte, i int) []byte {
	b[i] ^= 0xff
	return b
}

// endless is an infinite stream that counts the bytes read from it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestInspectReadsAtMostMaxBytesPlusOne(t *testing.T) {
	for _, maxBytes := range []int64{1, 1000, 1 << 20} {
		src := &endless{}
		_, _, err := photo.Inspect(src, photo.ImagingConfig{MaxBytes: maxBytes})
		if !errors.Is(err, photo.ErrTooLarge) {
			t.Fatalf("MaxBytes %d: error = %v, want ErrTooLarge", maxBytes, err)
		}
		if src.n != maxBytes+1 {
			t.Errorf("MaxBytes %d: read %d bytes, want %d", maxBytes, src.n, maxBytes+1)
		}
	}
	// The default applies when MaxBytes is zero.
	src := &endless{}
	_, _, err := photo.Inspect(src, photo.ImagingConfig{})
	if !errors.Is(err, photo.ErrTooLarge) || src.n != photo.DefaultMaxBytes+1 {
		t.Fatalf("default limit: error %v after %d bytes", err, src.n)
	}
	if want := "too large: the file is larger than the 32 MiB limit"; err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
}

func TestInspectReadError(t *testing.T) {
	_, _, err := photo.Inspect(io.MultiReader(strings.NewReader("\xff\xd8"), iotestErrReader{}), photo.ImagingConfig{})
	if err == nil || photo.FailureCode(err) != photo.CodeInternal {
		t.Fatalf("error = %v (code %q), want an internal error", err, photo.FailureCode(err))
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestMakeThumbnailSizes(t *testing.T) {
	small, medium := photo.DefaultThumbnailSizes[0], photo.DefaultThumbnailSizes[1]
	tests := []struct {
		name         string
		w, h         int
		size         photo.ThumbnailSize
		wantW, wantH int
	}{
		{"landscape small", 800, 450, small, 160, 90},
		{"landscape medium", 800, 450, medium, 640, 360},
		{"portrait small", 450, 800, small, 90, 160},
		{"portrait medium", 450, 800, medium, 360, 640},
		{"square", 700, 700, small, 160, 160},
		{"rounding", 600, 400, small, 160, 107},
		{"tiny is not upscaled (small)", 100, 50, small, 100, 50},
		{"tiny is not upscaled (medium)", 100, 50, medium, 100, 50},
		{"between the sizes", 400, 300, medium, 400, 300},
		{"exactly the box", 160, 160, small, 160, 160},
		{"panorama keeps one pixel", 8000, 20, small, 160, 1},
		{"one pixel", 1, 1, medium, 1, 1},
		{"unbounded height", 400, 1000, photo.ThumbnailSize{Name: "w100", MaxWidth: 100}, 100, 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := image.NewRGBA(image.Rect(0, 0, tt.w, tt.h))
			got := photo.MakeThumbnail(src, tt.size).Bounds()
			if want := image.Rect(0, 0, tt.wantW, tt.wantH); got != want {
				t.Errorf("MakeThumbnail(%dx%d, %+v) = %v, want %v", tt.w, tt.h, tt.size, got, want)
			}
		})
	}
}

func TestMakeThumbnailContent(t *testing.T) {
	red := color.RGBA{200, 10, 10, 255}
	big := image.NewRGBA(image.Rect(0, 0, 800, 400))
	for i := 0; i < len(big.Pix); i += 4 {
		copy(big.Pix[i:], []uint8{red.R, red.G, red.B, red.A})
	}
	// A sub-image whose bounds do not start at the origin.
	sub := big.SubImage(image.Rect(100, 100, 420, 340))
	for _, src := range []image.Image{big, sub} {
		for _, size := range photo.DefaultThumbnailSizes {
			th := photo.MakeThumbnail(src, size)
			if th.Bounds().Min != (image.Point{}) {
				t.Errorf("thumbnail bounds %v do not start at the origin", th.Bounds())
			}
			c := th.Bounds().Max.Div(2)
			if got := th.RGBAAt(c.X, c.Y); got != red {
				t.Errorf("%s thumbnail of %v: centre pixel %v, want %v", size.Name, src.Bounds(), got, red)
			}
		}
	}
}

func TestDecodeThumbnailEncode(t *testing.T) {
	for _, format := range []string{photo.FormatJPEG, photo.FormatPNG, photo.FormatGIF} {
		data := generate(t, format, 400, 300)
		_, img, err := photo.Inspect(bytes.NewReader(data), photo.ImagingConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := photo.EncodeJPEG(&buf, photo.MakeThumbnail(img, photo.DefaultThumbnailSizes[0])); err != nil {
			t.Fatal(err)
		}
		cfg, err := jpeg.DecodeConfig(&buf)
		if err != nil {
			t.Fatalf("%s: thumbnail is not a JPEG: %v", format, err)
		}
		if cfg.Width != 160 || cfg.Height != 120 {
			t.Errorf("%s: thumbnail is %dx%d, want 160x120", format, cfg.Width, cfg.Height)
		}
	}
}

func TestEncodeJPEGFlattensTransparencyOnWhite(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16)) // fully transparent
	var buf bytes.Buffer
	if err := photo.EncodeJPEG(&buf, img); err != nil {
		t.Fatal(err)
	}
	out, err := jpeg.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := out.At(8, 8).RGBA()
	if r>>8 < 250 || g>>8 < 250 || b>>8 < 250 {
		t.Errorf("transparent pixel encoded as (%d,%d,%d), want white", r>>8, g>>8, b>>8)
	}
}

func TestGenerateTestImage(t *testing.T) {
	a := generate(t, photo.FormatPNG, 64, 48)
	b := generate(t, photo.FormatPNG, 64, 48)
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different images")
	}
	c, err := photo.GenerateTestImage(photo.FormatPNG, 64, 48, 2)
	if err != nil || bytes.Equal(a, c) {
		t.Errorf("different seed gave the same image (err %v)", err)
	}
	// Not trivially compressible: a 256x256 PNG of a flat colour is ~1 KB.
	if n := len(generate(t, photo.FormatPNG, 256, 256)); n < 50_000 {
		t.Errorf("256x256 PNG is only %d bytes", n)
	}
	if _, err := photo.GenerateTestImage("bmp", 10, 10, 1); !errors.Is(err, photo.ErrUnsupportedFormat) {
		t.Errorf("format bmp: error = %v, want ErrUnsupportedFormat", err)
	}
	for _, wh := range [][2]int{{0, 10}, {10, -1}, {100_000, 100_000}} {
		if _, err := photo.GenerateTestImage(photo.FormatPNG, wh[0], wh[1], 1); err == nil {
			t.Errorf("size %dx%d accepted", wh[0], wh[1])
		}
	}
}

func TestFailureCode(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{photo.ErrCorrupt, photo.CodeCorrupt},
		{photo.ErrUnsupportedFormat, photo.CodeUnsupportedFormat},
		{photo.ErrTooLarge, photo.CodeTooLarge},
		{photo.ErrNotFound, photo.CodeNotFound},
		{errors.Join(errors.New("wrapped"), photo.ErrNotFound), photo.CodeNotFound},
		{photo.ErrInvalidKey, photo.CodeInternal},
		{io.ErrUnexpectedEOF, photo.CodeInternal},
	}
	for _, tt := range tests {
		if got := photo.FailureCode(tt.err); got != tt.want {
			t.Errorf("FailureCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
