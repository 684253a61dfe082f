package kv_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/heapkv/heapkv/kv"
)

func Example() {
	dir, _ := os.MkdirTemp("", "heapkv-example")
	defer os.RemoveAll(dir)

	db, err := kv.Open(dir, &kv.Options{SharedBuffers: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	err = db.Update(ctx, func(tx *kv.Tx) error {
		return tx.Put([]byte("greeting"), []byte("hello, heap"))
	})
	if err != nil {
		log.Fatal(err)
	}
	err = db.View(ctx, func(tx *kv.Tx) error {
		v, err := tx.Get([]byte("greeting"))
		fmt.Println(string(v))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: hello, heap
}
