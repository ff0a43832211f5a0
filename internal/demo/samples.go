package demo

import (
	"fmt"

	"github.com/shared-infra/eventbus/photo"
)

// upload is one file the api service receives.
type upload struct {
	id, owner, filename, contentType string
	data                             []byte
}

// sampleUploads generates the demo's files, their dimensions multiplied by
// scale: four images the worker processes and two it must refuse, placed
// among the others to show that the worker carries on.
func sampleUploads(scale float64) ([]upload, error) {
	dim := func(n int) int { return max(1, int(float64(n)*scale+0.5)) }
	specs := []struct {
		id, owner, filename, contentType string
		format                           string
		w, h                             int
	}{
		{"photo-1", "alice", "beach.jpg", "image/jpeg", photo.FormatJPEG, 1200, 800},
		{"photo-2", "bob", "broken.jpg", "image/jpeg", photo.FormatJPEG, 800, 600}, // truncated below
		{"photo-3", "bob", "portrait.png", "image/png", photo.FormatPNG, 600, 900},
		{"photo-4", "carol", "notes.jpg", "image/jpeg", "", 0, 0}, // a text file
		{"photo-5", "alice", "party.gif", "image/gif", photo.FormatGIF, 480, 360},
		{"photo-6", "carol", "panorama.jpg", "image/jpeg", photo.FormatJPEG, 2400, 800},
	}
	out := make([]upload, 0, len(specs))
	for i, s := range specs {
		u := upload{id: s.id, owner: s.owner, filename: s.filename, contentType: s.contentType}
		if s.format == "" {
			u.data = []byte("Shopping list:\n- milk\n- eggs\n- a film for the old camera\n")
		} else {
			data, err := photo.GenerateTestImage(s.format, dim(s.w), dim(s.h), int64(i+1))
			if err != nil {
				return nil, fmt.Errorf("generate %s: %w", s.filename, err)
			}
			if s.filename == "broken.jpg" {
				data = data[:len(data)/2] // the upload was cut off
			}
			u.data = data
		}
		out = append(out, u)
	}
	return out, nil
}
