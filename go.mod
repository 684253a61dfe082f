module github.com/heapkv/heapkv

go 1.26

require (
	github.com/google/btree v1.1.3 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
)
