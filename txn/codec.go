package txn

import (
	"encoding/binary"

	"github.com/heapkv/heapkv/internal/base"
)

// The encodings of the manager's bytes on disk: the payloads of its WAL
// records and its section of a checkpoint record. Every decoder takes bytes
// read from disk: it returns an error matching base.ErrCorrupt for any
// damage, never panics, and allocates only once it knows the input holds
// what a count claims (fuzz_test.go checks all three).

// Limits of the encodings, checked when decoding.
const (
	maxGIDLen = 200 // bytes; Prepare enforces it
	// maxCLOGPage is the highest CLOG page a zero-page record may name:
	// the xids of the page after it must still fit in 64 bits.
	maxCLOGPage = int64(^uint64(0)/xidsPerPage) - 1
	// minPreparedLen is the fewest bytes one prepared transaction takes in
	// the checkpoint section: a one-byte gid, its xid, no subxids.
	minPreparedLen = 2 + 1 + 8 + 4
)

func decodeCheckpointState(b []byte) (oldest base.XID, preps []preparedRecord, err error) {
	if len(b) < 12 {
		return 0, nil, base.CorruptionErrorf("txn: checkpoint section of %d bytes", len(b))
	}
	oldest = base.XID(binary.LittleEndian.Uint64(b))
	n := uint64(binary.LittleEndian.Uint32(b[8:]))
	b = b[12:]
	if n > uint64(len(b))/minPreparedLen {
		return 0, nil, base.CorruptionErrorf("txn: checkpoint section claims %d prepared transactions in %d bytes", n, len(b))
	}
	preps = make([]preparedRecord, 0, n)
	seen := make(map[string]bool, n)
	for range n {
		var p preparedRecord
		if p.gid, b, err = decodeGID(b); err != nil {
			return 0, nil, err
		}
		if seen[p.gid] {
			return 0, nil, base.CorruptionErrorf("txn: checkpoint section lists gid %q twice", p.gid)
		}
		seen[p.gid] = true
		if len(b) < 8 {
			return 0, nil, base.CorruptionErrorf("txn: checkpoint section truncated")
		}
		p.xid = base.XID(binary.LittleEndian.Uint64(b))
		if p.xid < FirstNormalXID {
			return 0, nil, base.CorruptionErrorf("txn: prepared transaction %q has xid %d", p.gid, p.xid)
		}
		if p.subs, b, err = decodeXIDs(b[8:]); err != nil {
			return 0, nil, err
		}
		preps = append(preps, p)
	}
	if len(b) != 0 {
		return 0, nil, base.CorruptionErrorf("txn: %d stray bytes in checkpoint section", len(b))
	}
	return oldest, preps, nil
}

// appendCheckpointState encodes the manager's section of a checkpoint
// record (the inverse of decodeCheckpointState): the oldest xid running,
// and the prepared transactions, gids distinct.
//
//	+-----------+---------+------------------------------------------+
//	| oldestRun | nprep   | per prepared: gidlen u16, gid, xid u64,  |
//	|   u64     |  u32    |   nsubs u32, subxids u64...              |
//	+-----------+---------+------------------------------------------+
func appendCheckpointState(b []byte, oldest base.XID, preps []preparedRecord) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(oldest))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(preps)))
	for _, p := range preps {
		b = appendGID(b, p.gid)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.xid))
		b = appendXIDs(b, p.subs)
	}
	return b
}

// appendXIDs encodes a list of xids: count u32, then each u64.
func appendXIDs(b []byte, xids []base.XID) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(xids)))
	for _, x := range xids {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}

// decodeXIDs decodes a list appendXIDs made and returns the bytes after it.
// It allocates only once it knows the input holds every xid the count
// claims. An empty list decodes as nil.
func decodeXIDs(b []byte) ([]base.XID, []byte, error) {
	if len(b) < 4 {
		return nil, nil, base.CorruptionErrorf("txn: xid list truncated")
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if uint64(len(b)) < n*8 {
		return nil, nil, base.CorruptionErrorf("txn: xid list of %d claims %d bytes, %d left", n, n*8, len(b))
	}
	if n == 0 {
		return nil, b, nil
	}
	xids := make([]base.XID, n)
	for i := range xids {
		xids[i] = base.XID(binary.LittleEndian.Uint64(b[8*i:]))
		if xids[i] < FirstNormalXID {
			return nil, nil, base.CorruptionErrorf("txn: xid list holds xid %d", xids[i])
		}
	}
	return xids, b[n*8:], nil
}

// appendGID encodes a gid: length u16, then its bytes.
func appendGID(b []byte, gid string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(gid)))
	return append(b, gid...)
}

// decodeGID decodes a gid appendGID made (1 to maxGIDLen bytes) and
// returns the bytes after it.
func decodeGID(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, base.CorruptionErrorf("txn: gid truncated")
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n == 0 || n > maxGIDLen {
		return "", nil, base.CorruptionErrorf("txn: gid of %d bytes", n)
	}
	if len(b) < 2+n {
		return "", nil, base.CorruptionErrorf("txn: gid of %d bytes, %d left", n, len(b)-2)
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// txnPayload is the payload of an RmgrTxn record, by info (the top xid
// is the record's own XID):
//
//	infoZeroPage                        page u64
//	infoTruncate                        oldest xid kept u64
//	infoCommit, infoAbort, infoAbortSub nsubs u32, subxids u64...
//	infoPrepare, infoCommitPrepared,    gidlen u16, gid, nsubs u32,
//	  infoAbortPrepared                   subxids u64...
//
// Little-endian; the payload holds nothing else.
type txnPayload struct {
	page   int64      // infoZeroPage
	oldest base.XID   // infoTruncate
	gid    string     // the prepared ones
	subs   []base.XID // all but infoZeroPage and infoTruncate; nil if none
}

// appendTxnPayload encodes r as the payload of a record of kind info.
func appendTxnPayload(b []byte, info uint8, r txnPayload) []byte {
	switch info {
	case infoZeroPage:
		return binary.LittleEndian.AppendUint64(b, uint64(r.page))
	case infoTruncate:
		return binary.LittleEndian.AppendUint64(b, uint64(r.oldest))
	case infoPrepare, infoCommitPrepared, infoAbortPrepared:
		b = appendGID(b, r.gid)
	}
	return appendXIDs(b, r.subs)
}

// decodeTxnPayload decodes the payload of a record of kind info, read from
// the WAL: any damage is an error matching base.ErrCorrupt.
func decodeTxnPayload(info uint8, p []byte) (txnPayload, error) {
	var r txnPayload
	var err error
	switch info {
	case infoZeroPage, infoTruncate:
		if len(p) != 8 {
			return r, base.CorruptionErrorf("txn: record %#x of %d bytes, want 8", info, len(p))
		}
		v := binary.LittleEndian.Uint64(p)
		if info == infoTruncate {
			r.oldest = base.XID(v)
			return r, nil
		}
		if v > uint64(maxCLOGPage) {
			return r, base.CorruptionErrorf("txn: zero-page record for page %d", v)
		}
		r.page = int64(v)
		return r, nil
	case infoCommit, infoAbort, infoAbortSub:
	case infoPrepare, infoCommitPrepared, infoAbortPrepared:
		if r.gid, p, err = decodeGID(p); err != nil {
			return r, err
		}
	default:
		return r, base.CorruptionErrorf("txn: unknown record info %#x", info)
	}
	if r.subs, p, err = decodeXIDs(p); err != nil {
		return r, err
	}
	if len(p) != 0 {
		return r, base.CorruptionErrorf("txn: %d stray bytes after record %#x", len(p), info)
	}
	return r, nil
}
