package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fakeS3 is a part-accepting S3 endpoint for the S3 half of the 50 GiB
// benchmark. Neither versitygw's 50 GiB of parts nor the 50 GiB object it
// then assembles fit on this machine's disk, so parts are checked and
// dropped: each part's CRC32C must match its x-amz-checksum-crc32c, and
// CompleteMultipartUpload must list part numbers in ascending order, each
// uploaded with the ETag and checksum given, every part but the last at
// least 5 MiB, at most 10,000 of them. Small objects (roughy's tails of a
// part) are kept in memory; completed objects keep only their size.
//
// It implements only what roughy's S3 sink calls (pipeline/s3*.go), path
// style, and checks no signature: roughy signs with credentials it is
// given, and nothing here needs to know them.
type fakeS3 struct {
	bucket string

	mu        sync.Mutex
	nextID    int
	uploads   map[string]*fakeMPU // by upload id
	objects   map[string]fakeObject
	completed []completedMPU
}

// fakeMaxSmall bounds the objects kept in memory: roughy's tails are
// shorter than a part (at most 64 MiB, the largest part it plans).
const fakeMaxSmall = 64 << 20

// fakeMinPart is S3's minimum size of every part but the last.
const fakeMinPart = 5 << 20

// fakeMaxParts is S3's limit on part numbers.
const fakeMaxParts = 10000

type fakeMPU struct {
	key   string
	parts map[int]fakePart
}

type fakePart struct {
	size int64
	crc  string // base64 CRC32C
	etag string
}

type fakeObject struct {
	data []byte // nil for a completed multipart object (bytes dropped)
	size int64
	etag string
}

// completedMPU is what one CompleteMultipartUpload assembled.
type completedMPU struct {
	Key   string
	Parts int
	Size  int64
	// MinPart and MaxPart are the smallest and largest sizes of the parts
	// before the last, LastPart the size of the last.
	MinPart, MaxPart int64
	LastPart         int64
}

func newFakeS3(bucket string) *fakeS3 {
	return &fakeS3{bucket: bucket, uploads: map[string]*fakeMPU{}, objects: map[string]fakeObject{}}
}

// Completed returns the multipart uploads completed so far.
func (f *fakeS3) Completed() []completedMPU {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]completedMPU(nil), f.completed...)
}

// OpenUploads returns how many multipart uploads are neither completed
// nor aborted.
func (f *fakeS3) OpenUploads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.uploads)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcBase64(c uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return base64.StdEncoding.EncodeToString(b[:])
}

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

// s3Error is S3's error document.
type s3Error struct {
	XMLName xml.Name `xml:"Error"`
	Code    string   `xml:"Code"`
	Message string   `xml:"Message"`
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(s3Error{Code: code, Message: msg})
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/xml")
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}

// ServeHTTP routes the S3 calls the server makes.
//
//nolint:gocyclo // The route table of the fake: one case per S3 operation, as S3 tells them apart (method and query).
func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket != f.bucket {
		writeErr(w, http.StatusNotFound, "NoSuchBucket", "no bucket "+bucket)
		return
	}
	q := r.URL.Query()
	switch {
	case key == "" && r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK)
	case key == "" && r.Method == http.MethodGet && q.Get("list-type") == "2":
		f.list(w, q.Get("prefix"))
	case key == "":
		writeErr(w, http.StatusNotImplemented, "NotImplemented", r.Method+" on the bucket")
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.create(w, key)
	case r.Method == http.MethodPut && q.Has("uploadId") && r.Header.Get("X-Amz-Copy-Source") == "":
		f.uploadPart(w, r, q.Get("uploadId"), q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		f.complete(w, r, key, q.Get("uploadId"))
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		f.abort(w, q.Get("uploadId"))
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") == "":
		f.put(w, r, key)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		f.get(w, r, key)
	case r.Method == http.MethodDelete:
		f.mu.Lock()
		delete(f.objects, key)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeErr(w, http.StatusNotImplemented, "NotImplemented", r.Method+" "+r.URL.RawQuery)
	}
}

func (f *fakeS3) create(w http.ResponseWriter, key string) {
	f.mu.Lock()
	f.nextID++
	id := "mpu-" + strconv.Itoa(f.nextID)
	f.uploads[id] = &fakeMPU{key: key, parts: map[int]fakePart{}}
	f.mu.Unlock()
	writeXML(w, struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		UploadID string   `xml:"UploadId"`
	}{NS: s3NS, Bucket: f.bucket, Key: key, UploadID: id})
}

// readChecked reads r's body, counting it and computing its CRC32C, and
// compares that with the x-amz-checksum-crc32c header when there is one.
// keep says whether to return the bytes (small objects) or drop them.
func readChecked(r *http.Request, keep bool) (data []byte, n int64, sum string, err error) {
	h := crc32.New(castagnoli)
	var dst io.Writer = h
	var buf bytes.Buffer
	if keep {
		dst = io.MultiWriter(h, &buf)
	}
	n, err = io.Copy(dst, r.Body)
	if err != nil {
		return nil, n, "", fmt.Errorf("read body: %w", err)
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		return nil, n, "", fmt.Errorf("body of %d bytes, Content-Length %d", n, r.ContentLength)
	}
	sum = crcBase64(h.Sum32())
	if want := r.Header.Get("X-Amz-Checksum-Crc32c"); want != "" && want != sum {
		return nil, n, sum, fmt.Errorf("CRC32C %s, header says %s", sum, want)
	}
	if keep {
		data = buf.Bytes()
	}
	return data, n, sum, nil
}

func (f *fakeS3) uploadPart(w http.ResponseWriter, r *http.Request, id, num string) {
	pn, err := strconv.Atoi(num)
	if err != nil || pn < 1 || pn > fakeMaxParts {
		writeErr(w, http.StatusBadRequest, "InvalidArgument", "part number "+num)
		return
	}
	f.mu.Lock()
	_, ok := f.uploads[id]
	f.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "NoSuchUpload", id)
		return
	}
	_, n, sum, err := readChecked(r, false)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "BadDigest", err.Error())
		return
	}
	etag := fmt.Sprintf("%q", fmt.Sprintf("%s-%d-%d", id, pn, n))
	f.mu.Lock()
	mpu, ok := f.uploads[id]
	if ok {
		mpu.parts[pn] = fakePart{size: n, crc: sum, etag: etag}
	}
	f.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "NoSuchUpload", id)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("X-Amz-Checksum-Crc32c", sum)
	w.WriteHeader(http.StatusOK)
}

// completeRequest is the CompleteMultipartUpload body.
type completeRequest struct {
	Parts []struct {
		PartNumber     int    `xml:"PartNumber"`
		ETag           string `xml:"ETag"`
		ChecksumCRC32C string `xml:"ChecksumCRC32C"`
	} `xml:"Part"`
}

func (f *fakeS3) complete(w http.ResponseWriter, r *http.Request, key, id string) {
	var req completeRequest
	if err := xml.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "MalformedXML", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	mpu, ok := f.uploads[id]
	if !ok || mpu.key != key {
		writeErr(w, http.StatusNotFound, "NoSuchUpload", id)
		return
	}
	done, err := checkParts(key, mpu.parts, req)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidPart", err.Error())
		return
	}
	delete(f.uploads, id)
	etag := fmt.Sprintf("%q", fmt.Sprintf("%s-%d", id, done.Parts))
	f.objects[key] = fakeObject{size: done.Size, etag: etag}
	f.completed = append(f.completed, done)
	writeXML(w, struct {
		XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Location string   `xml:"Location"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		ETag     string   `xml:"ETag"`
	}{NS: s3NS, Location: "/" + f.bucket + "/" + key, Bucket: f.bucket, Key: key, ETag: etag})
}

// checkParts applies S3's rules to a Complete request against the parts
// that were uploaded.
func checkParts(key string, uploaded map[int]fakePart, req completeRequest) (completedMPU, error) {
	done := completedMPU{Key: key, Parts: len(req.Parts)}
	if len(req.Parts) == 0 {
		return done, errors.New("no parts")
	}
	if len(req.Parts) > fakeMaxParts {
		return done, fmt.Errorf("%d parts, more than %d", len(req.Parts), fakeMaxParts)
	}
	prev := 0
	for i, p := range req.Parts {
		if p.PartNumber <= prev {
			return done, fmt.Errorf("part %d after part %d: not ascending and unique", p.PartNumber, prev)
		}
		prev = p.PartNumber
		got, ok := uploaded[p.PartNumber]
		if !ok {
			return done, fmt.Errorf("part %d was never uploaded", p.PartNumber)
		}
		if p.ETag != got.etag {
			return done, fmt.Errorf("part %d: ETag %s, uploaded as %s", p.PartNumber, p.ETag, got.etag)
		}
		if p.ChecksumCRC32C != "" && p.ChecksumCRC32C != got.crc {
			return done, fmt.Errorf("part %d: CRC32C %s, uploaded as %s", p.PartNumber, p.ChecksumCRC32C, got.crc)
		}
		last := i == len(req.Parts)-1
		if !last && got.size < fakeMinPart {
			return done, fmt.Errorf("part %d of %d bytes is not the last and under 5 MiB", p.PartNumber, got.size)
		}
		done.Size += got.size
		if last {
			done.LastPart = got.size
			continue
		}
		done.MaxPart = max(done.MaxPart, got.size)
		if done.MinPart == 0 || got.size < done.MinPart {
			done.MinPart = got.size
		}
	}
	return done, nil
}

func (f *fakeS3) abort(w http.ResponseWriter, id string) {
	f.mu.Lock()
	_, ok := f.uploads[id]
	delete(f.uploads, id)
	f.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "NoSuchUpload", id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeS3) put(w http.ResponseWriter, r *http.Request, key string) {
	if r.ContentLength > fakeMaxSmall {
		writeErr(w, http.StatusBadRequest, "EntityTooLarge", "the fake keeps objects up to 64 MiB")
		return
	}
	data, n, sum, err := readChecked(r, true)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "BadDigest", err.Error())
		return
	}
	etag := fmt.Sprintf("%q", sum)
	f.mu.Lock()
	f.objects[key] = fakeObject{data: data, size: n, etag: etag}
	f.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("X-Amz-Checksum-Crc32c", sum)
	w.WriteHeader(http.StatusOK)
}

// get answers GetObject (whole or one "bytes=a-b" range) and HeadObject.
// A completed multipart object has a size but no bytes: a GET of it fails.
func (f *fakeS3) get(w http.ResponseWriter, r *http.Request, key string) {
	f.mu.Lock()
	obj, ok := f.objects[key]
	f.mu.Unlock()
	if !ok {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeErr(w, http.StatusNotFound, "NoSuchKey", key)
		return
	}
	w.Header().Set("ETag", obj.etag)
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.Header().Set("Accept-Ranges", "bytes")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.FormatInt(obj.size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	if obj.data == nil && obj.size > 0 {
		writeErr(w, http.StatusNotImplemented, "NotImplemented", "the fake drops the bytes of multipart objects")
		return
	}
	start, end := int64(0), obj.size-1
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		a, b, ok := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		s, err1 := strconv.ParseInt(a, 10, 64)
		e, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || s > e || s >= obj.size {
			writeErr(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", rg)
			return
		}
		start, end, status = s, min(e, obj.size-1), http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, obj.size))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	w.WriteHeader(status)
	_, _ = w.Write(obj.data[start : end+1])
}

func (f *fakeS3) list(w http.ResponseWriter, prefix string) {
	type content struct {
		Key          string `xml:"Key"`
		LastModified string `xml:"LastModified"`
		ETag         string `xml:"ETag"`
		Size         int64  `xml:"Size"`
		StorageClass string `xml:"StorageClass"`
	}
	f.mu.Lock()
	var cs []content
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	for k, o := range f.objects {
		if strings.HasPrefix(k, prefix) {
			cs = append(cs, content{Key: k, LastModified: now, ETag: o.etag, Size: o.size, StorageClass: "STANDARD"})
		}
	}
	f.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].Key < cs[j].Key })
	writeXML(w, struct {
		XMLName     xml.Name  `xml:"ListBucketResult"`
		NS          string    `xml:"xmlns,attr"`
		Name        string    `xml:"Name"`
		Prefix      string    `xml:"Prefix"`
		KeyCount    int       `xml:"KeyCount"`
		MaxKeys     int       `xml:"MaxKeys"`
		IsTruncated bool      `xml:"IsTruncated"`
		Contents    []content `xml:"Contents"`
	}{NS: s3NS, Name: f.bucket, Prefix: prefix, KeyCount: len(cs), MaxKeys: 1000, Contents: cs})
}
