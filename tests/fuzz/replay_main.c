/* Replays every file of a fuzz corpus folder through a fuzz entry point. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	uint8_t *data = NULL;
	size_t size = 0, cap = 0, n;
	uint8_t chunk[4096];
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (size + n > cap) {
			cap = (size + n) * 2;
			uint8_t *grown = realloc(data, cap);
			if (!grown) {
				free(data);
				fclose(f);
				return 1;
			}
			data = grown;
		}
		memcpy(data + size, chunk, n);
		size += n;
	}
	fclose(f);
	/* an exact-size copy, so ASan sees any read past the input */
	uint8_t *exact = malloc(size ? size : 1);
	if (exact && size)
		memcpy(exact, data, size);
	free(data);
	if (!exact)
		return 1;
	LLVMFuzzerTestOneInput(exact, size);
	free(exact);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, failed = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (!d) {
			failed += replay_file(argv[i]);
			files++;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
			failed += replay_file(path);
			files++;
		}
		closedir(d);
	}
	printf("replayed %d inputs, %d unreadable\n", files, failed);
	return failed ? 1 : 0;
}
