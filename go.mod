module github.com/heapkv/heapkv

go 1.26
