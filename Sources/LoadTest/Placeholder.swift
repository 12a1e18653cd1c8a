// LoadTest
