package photo_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/shared-infra/eventbus/photo"
)

func ExampleInspect() {
	data, err := photo.GenerateTestImage(photo.FormatPNG, 1200, 800, 42)
	if err != nil {
		log.Fatal(err)
	}
	info, img, err := photo.Inspect(bytes.NewReader(data), photo.ImagingConfig{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %dx%d\n", info.Format, info.Width, info.Height)
	for _, size := range photo.DefaultThumbnailSizes {
		th := photo.MakeThumbnail(img, size)
		var buf bytes.Buffer
		if err := photo.EncodeJPEG(&buf, th); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %dx%d\n", size.Name, th.Bounds().Dx(), th.Bounds().Dy())
	}
	// Output:
	// png 1200x800
	// small 160x107
	// medium 640x427
}

func ExampleFailureCode() {
	_, _, err := photo.Inspect(strings.NewReader("just some text"), photo.ImagingConfig{})
	failed := photo.ProcessingFailed{
		PhotoID: "p1",
		OwnerID: "u1",
		Reason:  err.Error(),
		Code:    photo.FailureCode(err),
	}
	fmt.Println(failed.Reason)
	fmt.Println(failed.Code)
	// Output:
	// unsupported format: the file is not a JPEG, PNG or GIF image
	// unsupported_format
}

func ExampleDiskStore() {
	dir, err := os.MkdirTemp("", "photos")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := photo.NewDiskStore(dir)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"thumbs/p1/small.jpg", "thumbs/p1/medium.jpg", "originals/p1"} {
		if err := store.Put(ctx, key, strings.NewReader("...")); err != nil {
			log.Fatal(err)
		}
	}
	keys, err := store.List(ctx, "thumbs/p1/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)

	_, err = store.Get(ctx, "../etc/passwd")
	fmt.Println(err)
	// Output:
	// [thumbs/p1/medium.jpg thumbs/p1/small.jpg]
	// photo: get "../etc/passwd": invalid key: element ".."; keys are relative slash-separated paths without empty, "." or ".." elements
}

func ExampleSchemas() {
	for _, typ := range slices.Sorted(maps.Keys(photo.Schemas())) {
		fmt.Println(typ)
	}
	// Output:
	// photo.deleted
	// photo.notification
	// photo.processing.completed
	// photo.processing.failed
	// photo.processing.progress
	// photo.processing.started
	// photo.uploaded
}
